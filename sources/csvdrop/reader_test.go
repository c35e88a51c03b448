package csvdrop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// recorder is an Emitter that writes down every call, the way a reviewer
// reads them in the golden files.
type recorder struct {
	b       strings.Builder
	names   []string
	keys    []string
	rejects []string
	fail    error // returned by Record when set
}

func sameSlice(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (r *recorder) Record(rec *connector.Record) error {
	if r.fail != nil {
		return r.fail
	}
	if !sameSlice(rec.Names, r.names) {
		fmt.Fprintf(&r.b, "names %q\n", rec.Names)
		r.names = rec.Names
	}
	fmt.Fprintf(&r.b, "record %s key=%q values=%q\n", rec.Origin, rec.Key, rec.Values)
	r.keys = append(r.keys, rec.Key)
	return nil
}

func (r *recorder) Reject(key, origin, reason string) error {
	fmt.Fprintf(&r.b, "reject %s key=%q reason=%q\n", origin, key, reason)
	r.rejects = append(r.rejects, key)
	return nil
}

func (r *recorder) Delete(key, origin string) error {
	fmt.Fprintf(&r.b, "delete %s key=%q\n", origin, key)
	return nil
}

// golden compares got with testdata/golden/name, or rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(want, []byte(got)) {
		t.Errorf("%s differs from the output:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestReadFile(t *testing.T) {
	tests := []struct {
		file      string
		encoding  string // default auto
		delimiter string // default auto
		key       string // default Supplier ID
		limit     int
		golden    string // default file name with .txt
	}{
		{file: "utf8_bom.csv"},
		{file: "utf8_plain.csv"},
		{file: "utf8_bom.csv", encoding: "utf-8", golden: "utf8_bom_explicit.txt"},
		{file: "utf16le_bom.csv"},
		{file: "utf16be_bom.csv"},
		{file: "utf16le_bom.csv", encoding: "utf-16", golden: "utf16le_bom_explicit.txt"},
		{file: "utf16le_nobom.csv"},
		{file: "utf16le_nobom.csv", encoding: "utf-16", golden: "utf16le_nobom_explicit.txt"},
		{file: "cp1252_semicolon.csv"},
		{file: "cp1252_semicolon.csv", encoding: "windows-1252", delimiter: ";", golden: "cp1252_semicolon_explicit.txt"},
		{file: "cp1252_semicolon.csv", encoding: "utf-8", golden: "cp1252_as_utf8.txt"},
		{file: "latin1_late.csv"},
		{file: "latin1_late.csv", encoding: "iso-8859-1", golden: "latin1_late_explicit.txt"},
		{file: "tab.csv"},
		{file: "tab.csv", delimiter: "tab", golden: "tab_explicit.txt"},
		{file: "crlf.csv"},
		{file: "cr_only.csv"},
		{file: "quoted.csv"},
		{file: "dupkeys.csv"},
		{file: "emptykey.csv"},
		{file: "trimkey.csv", key: " SUPPLIER ID"},
		{file: "nokey.csv"},
		{file: "ragged.csv"},
		{file: "unterminated.csv"},
		{file: "barequote.csv"},
		{file: "dupheader.csv"},
		{file: "empty.csv"},
		{file: "invalid_utf8.csv"},
		{file: "invalid_utf8.csv", encoding: "windows-1252", golden: "invalid_utf8_as_cp1252.txt"},
		{file: "dupkeys.csv", limit: 2, golden: "dupkeys_limit2.txt"},
	}
	for _, tt := range tests {
		name := tt.golden
		if name == "" {
			name = strings.TrimSuffix(tt.file, ".csv") + ".txt"
		}
		t.Run(name, func(t *testing.T) {
			key := tt.key
			if key == "" {
				key = "Supplier ID"
			}
			c := &Config{Dir: "testdata/in", Key: key, Encoding: tt.encoding, Delimiter: tt.delimiter}
			v := connector.NewValidator("")
			c.Validate(v)
			if err := v.Err(); err != nil {
				t.Fatal(err)
			}
			src, err := c.Open(connector.Env{})
			if err != nil {
				t.Fatal(err)
			}
			fh, err := os.Open(filepath.Join("testdata", "in", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			rec := &recorder{}
			st, err := readFile(context.Background(), tt.file, fh, &src.(*Source).opt, tt.limit, rec)
			out := rec.b.String()
			if err != nil {
				out += "error: " + err.Error() + "\n"
				if !strings.Contains(err.Error(), tt.file+" line ") {
					t.Errorf("error %q does not name the file and a line", err)
				}
			} else {
				out += fmt.Sprintf("stats records=%d rejected=%d blank=%d truncated=%v\n", st.records, st.rejected, st.blank, st.truncated)
			}
			golden(t, name, out)
		})
	}
}

// TestDecodeChunks feeds the decoder one byte at a time, so that every
// rune and every decision is cut by a read boundary somewhere.
func TestDecodeChunks(t *testing.T) {
	tests := []struct {
		name, encoding string
		in             []byte
		want           string
		wantErr        string
	}{
		{"utf8", "auto", []byte("a,b\nZoë,Łódź 東京\n"), "a,b\nZoë,Łódź 東京\n", ""},
		{"cp1252 late", "auto", []byte("a,b\nx,y\nG\xe9rard,\x80\n"), "a,b\nx,y\nGérard,€\n", ""},
		{"utf8 then invalid", "auto", []byte("a\né\nx\n\xff\n"), "a\né\nx\n", "line 4: invalid UTF-8 byte 0xFF"},
		{"truncated rune at EOF", "auto", []byte("a\né\n\xc3"), "a\né\n", "line 3: invalid UTF-8 byte 0xC3"},
		{"explicit utf-8", "utf-8", []byte("\xef\xbb\xbfa\n\xe9\n"), "a\n", "line 2: invalid UTF-8 byte 0xE9: if the file is not UTF-8"},
		{"utf-16le", "auto", append([]byte{0xff, 0xfe}, 'a', 0, '\n', 0, 0xe9, 0), "a\né", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := newTextReader(newBufReader(&oneByteReader{b: tt.in}), tt.encoding)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			buf := make([]byte, 3)
			for {
				n, err := r.Read(buf)
				got.Write(buf[:n])
				if err != nil {
					if err == io.EOF {
						err = nil
					}
					var de *decodeError
					switch {
					case tt.wantErr == "" && err != nil:
						t.Fatalf("error %v", err)
					case tt.wantErr != "" && !errors.As(err, &de):
						t.Fatalf("error %v, want a decodeError", err)
					case tt.wantErr != "":
						if msg := fmt.Sprintf("line %d: %v", de.line, de); !strings.HasPrefix(msg, tt.wantErr) {
							t.Fatalf("error %q, want %q", msg, tt.wantErr)
						}
					}
					break
				}
			}
			if got.String() != tt.want {
				t.Errorf("decoded %q, want %q", got.String(), tt.want)
			}
		})
	}
}

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, bufferSize) }

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestSniffDelimiter(t *testing.T) {
	tests := []struct {
		header string
		want   rune
	}{
		{"a,b,c\n1;2;3;4;5\n", ','},
		{"a;b;c\n", ';'},
		{"a\tb\tc", '\t'},
		{`"x;y;z",b` + "\n", ','},
		{`"multi` + "\n" + `line;;;",b,c` + "\n", ','},
		{"single\n", ','},
		{"a;b,c\n", ','},
		{"a;b\tc\n", ';'},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			if got := sniffDelimiter(newBufReader(strings.NewReader(tt.header))); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRecordTooLong(t *testing.T) {
	// An unterminated quote early in a big file must fail fast, not
	// buffer the rest of the file.
	var b bytes.Buffer
	b.WriteString("Supplier ID,Name\nA-1,ok\nA-2,\"never closed\n")
	for b.Len() < 3*maxRecordBytes {
		b.WriteString("A-3,filler filler filler filler filler filler\n")
	}
	opt := &readOptions{key: "supplier id", keyLabel: "Supplier ID", encoding: "auto"}
	_, err := readFile(context.Background(), "big.csv", &b, opt, 0, &recorder{})
	if err == nil || !strings.HasPrefix(err.Error(), "csvdrop: big.csv line 3: record longer than") {
		t.Fatalf("error %v", err)
	}
	if !errors.Is(err, errRecordTooLong) {
		t.Errorf("error %v does not wrap errRecordTooLong", err)
	}
}

func TestEmitterError(t *testing.T) {
	opt := &readOptions{key: "supplier id", keyLabel: "Supplier ID", encoding: "auto"}
	boom := errors.New("spool full")
	_, err := readFile(context.Background(), "x.csv", strings.NewReader("Supplier ID\nK\n"), opt, 0, &recorder{fail: boom})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "csvdrop: x.csv line 2: ") {
		t.Fatalf("error %v", err)
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	opt := &readOptions{key: "supplier id", keyLabel: "Supplier ID", encoding: "auto"}
	_, err := readFile(ctx, "x.csv", strings.NewReader("Supplier ID\nK\n"), opt, 0, &recorder{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
}
