package csvdrop

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/contactsync/contactsync/connector"
)

// eventLog records everything a reader hands over, in order.
type eventLog struct{ events []string }

func (l *eventLog) Record(r *connector.Record) error {
	l.events = append(l.events, fmt.Sprintf("record %q %q %q %q", r.Key, r.Origin, r.Names, r.Values))
	return nil
}

func (l *eventLog) Reject(key, origin, reason string) error {
	l.events = append(l.events, fmt.Sprintf("reject %q %q %q", key, origin, reason))
	return nil
}

func (l *eventLog) Delete(key, origin string) error {
	l.events = append(l.events, fmt.Sprintf("delete %q %q", key, origin))
	return nil
}

// readBoth reads data with the reader and with the old one (reader_old_test.go)
// and fails unless records, rejections, figures and error are the same.
// The new reader gets the bytes in pieces of the size chunk selects, so
// that every buffer boundary is crossed somewhere.
func readBoth(t *testing.T, data []byte, sel uint8, chunk uint8) {
	opt := &readOptions{
		key:       "supplier id",
		keyLabel:  "Supplier ID",
		encoding:  fuzzEncodings[int(sel)%len(fuzzEncodings)],
		delimiter: fuzzDelimiters[int(sel/8)%len(fuzzDelimiters)],
	}
	limit := int(sel/32) % 3
	var oldLog, newLog eventLog
	oldSt, oldErr := oldReadFile(context.Background(), "fuzz.csv", bytes.NewReader(data), opt, limit, &oldLog)
	var in = bytes.NewReader(data)
	var r interface{ Read([]byte) (int, error) } = in
	switch chunk % 3 {
	case 1:
		r = iotest.OneByteReader(in)
	case 2:
		r = iotest.HalfReader(in)
	}
	newSt, newErr := readFile(context.Background(), "fuzz.csv", r, opt, limit, &newLog)
	if fmt.Sprint(oldErr) != fmt.Sprint(newErr) {
		t.Fatalf("error\n new %v\n old %v", newErr, oldErr)
	}
	if oldErr != nil {
		// A failed file fails the run: what was handed over before does
		// not matter, and read-ahead differs.
		return
	}
	if oldSt != newSt {
		t.Fatalf("figures: new %+v, old %+v", newSt, oldSt)
	}
	if !slices.Equal(oldLog.events, newLog.events) {
		for i := range max(len(oldLog.events), len(newLog.events)) {
			var o, n string
			if i < len(oldLog.events) {
				o = oldLog.events[i]
			}
			if i < len(newLog.events) {
				n = newLog.events[i]
			}
			if o != n {
				t.Fatalf("event %d:\n new %s\n old %s", i, n, o)
			}
		}
	}
}

// loadFuzzCorpus returns the inputs of FuzzReader's corpus.
func loadFuzzCorpus(tb testing.TB) (data [][]byte, sels []uint8) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzReader", "*"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 3 || lines[0] != "go test fuzz v1" {
			tb.Fatalf("%s: not a corpus file", name)
		}
		d, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		arg := lines[2][strings.IndexByte(lines[2], '(')+1 : len(lines[2])-1]
		var sel uint64
		if strings.HasPrefix(arg, "'") {
			s, err := strconv.Unquote(arg)
			if err != nil || len(s) != 1 {
				tb.Fatalf("%s: selector %s", name, arg)
			}
			sel = uint64(s[0])
		} else if sel, err = strconv.ParseUint(arg, 0, 8); err != nil {
			tb.Fatalf("%s: selector %s", name, arg)
		}
		data = append(data, []byte(d))
		sels = append(sels, uint8(sel))
	}
	return data, sels
}

// FuzzReaderMatchesOld: the parser and key set read every input as the
// encoding/csv reader they replace did.
func FuzzReaderMatchesOld(f *testing.F) {
	data, sels := loadFuzzCorpus(f)
	for i := range data {
		for chunk := range uint8(3) {
			f.Add(data[i], sels[i], chunk)
			f.Add(data[i], sels[i]+32, chunk)
		}
	}
	ins, _ := filepath.Glob(filepath.Join("testdata", "in", "*"))
	for _, name := range ins {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0), uint8(2))
		f.Add(b, uint8(2), uint8(1))
	}
	f.Add([]byte("Supplier ID,N\n\"a\"\"b\",\"x\r\ny\"\nK,\"\"\"\"\n\"K\" ,z\n"), uint8(0), uint8(1))
	f.Add([]byte("Supplier ID,N\r\nA,1\r\n,\r\n \t,\r\nA ,2\r\nB,\"3\r"), uint8(0), uint8(0))
	f.Add([]byte("Supplier ID;N\nA;\"x\"y\"\nB;1\n"), uint8(8), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, sel, chunk uint8) {
		readBoth(t, data, sel, chunk)
	})
}

// TestReaderMatchesOldOnCRMExport compares the readers on the benchmark's
// export, whose rows cross many buffer boundaries.
func TestReaderMatchesOldOnCRMExport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.csv")
	writeCRMExport(t, path, 5000)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Duplicates, a blank row and an invisible key at the end.
	b = append(b, "SUP-0000001;x;;;;;;;;;;;\r\n;;;;;;;;;;;;\r\nSUP-\xa0\x81X;y;;;;;;;;;;;\r\nSUP-0004999;z;;;;;;;;;;;\r\n"...)
	for _, tt := range []struct {
		name       string
		sel, chunk uint8
	}{
		{"auto", 0, 0},
		{"windows-1252 half reads", 2, 2},
		{"iso-8859-1 limit", 3 + 32, 0},
	} {
		t.Run(tt.name, func(t *testing.T) { readBoth(t, b, tt.sel, tt.chunk) })
	}
}

// TestReaderMatchesOldLongRecords: records longer than the text buffer,
// quoted over many lines or not, and one past the limit.
func TestReaderMatchesOldLongRecords(t *testing.T) {
	big := strings.Repeat("x", 3*textBufferSize/2)
	tests := []struct {
		name string
		data string
	}{
		{"long field", "Supplier ID,N\nA," + big + "\nB,1\n"},
		{"long quoted field over lines", "Supplier ID,N\nA,\"" + strings.Repeat("xx\"\"x\r\nxx;x", 60_000) + "\"\nB,1\n"},
		{"long line before the header ends", "Supplier ID," + big + "\nA,1\n"},
		{"unterminated quote", "Supplier ID,N\nA,\"" + strings.Repeat(big+"\n", 3) + "B,1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for chunk := range uint8(3) {
				readBoth(t, []byte(tt.data), 0, chunk)
			}
		})
	}
}
