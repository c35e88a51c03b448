package csvdrop

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/contactsync/contactsync/connector"
)

// checkingEmitter checks what a reader hands over, whatever the bytes.
type checkingEmitter struct {
	t       *testing.T
	records int
}

func (e *checkingEmitter) Record(r *connector.Record) error {
	e.records++
	if len(r.Names) != len(r.Values) {
		e.t.Fatalf("%s: %d names, %d values", r.Origin, len(r.Names), len(r.Values))
	}
	if r.Key == "" || r.Key != strings.TrimSpace(r.Key) {
		e.t.Fatalf("%s: key %q", r.Origin, r.Key)
	}
	for _, v := range r.Values {
		if !utf8.ValidString(v) {
			e.t.Fatalf("%s: value %q is not UTF-8", r.Origin, v)
		}
	}
	if !strings.HasPrefix(r.Origin, "fuzz.csv:") {
		e.t.Fatalf("origin %q", r.Origin)
	}
	return nil
}

func (e *checkingEmitter) Reject(key, origin, reason string) error {
	if !strings.HasPrefix(origin, "fuzz.csv:") || reason == "" {
		e.t.Fatalf("reject %q %q %q", key, origin, reason)
	}
	return nil
}

func (e *checkingEmitter) Delete(key, origin string) error {
	e.t.Fatalf("a drop file never deletes (%q)", key)
	return nil
}

var fuzzEncodings = []string{encAuto, encUTF8, encCP1252, encLatin1, encUTF16}
var fuzzDelimiters = []rune{0, ',', ';', '\t'}

// FuzzReader reads arbitrary bytes as a drop file: it must not panic or
// hang, values must come out as UTF-8, and every error must name the file
// and a line.
func FuzzReader(f *testing.F) {
	f.Add([]byte("Supplier ID,Name\nA,x\n"), uint8(0))
	f.Add([]byte("\xef\xbb\xbfSupplier ID;Nom\r\nA;Soci\xc3\xa9t\xc3\xa9\r\n"), uint8(1))
	f.Add([]byte("Supplier ID;Nom\r\nA;Soci\xe9t\xe9\r\n\"B\";\"x\"\"y\"\n"), uint8(2))
	f.Add([]byte("\xff\xfeS\x00u\x00p\x00p\x00l\x00i\x00e\x00r\x00 \x00I\x00D\x00\n\x00A\x00"), uint8(4))
	f.Add([]byte("Supplier ID\tName\nA\t\"multi\nline\"\nA\tdup\n\t\n"), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		opt := &readOptions{
			key:       "supplier id",
			keyLabel:  "Supplier ID",
			encoding:  fuzzEncodings[int(sel)%len(fuzzEncodings)],
			delimiter: fuzzDelimiters[int(sel/8)%len(fuzzDelimiters)],
		}
		em := &checkingEmitter{t: t}
		_, err := readFile(context.Background(), "fuzz.csv", bytes.NewReader(data), opt, 0, em)
		if err == nil {
			return
		}
		var line int
		if _, serr := fmt.Sscanf(err.Error(), "csvdrop: fuzz.csv line %d:", &line); serr != nil || line < 1 {
			t.Fatalf("error %q does not name the file and a line", err)
		}
	})
}
