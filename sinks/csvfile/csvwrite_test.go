package csvfile

import (
	"bytes"
	"encoding/csv"
	"errors"
	"testing"
)

// viaEncodingCSV is the reference: what the files held when encoding/csv
// wrote them.
func viaEncodingCSV(t testing.TB, rec []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.UseCRLF = true
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAppendRowMatchesEncodingCSV(t *testing.T) {
	tests := []struct {
		name string
		rec  []string
	}{
		{"plain", []string{"a", "b", "c"}},
		{"empty fields", []string{"", "", ""}},
		{"one empty field", []string{""}},
		{"no field", []string{}},
		{"comma", []string{"Supplier 1, Inc.", "x"}},
		{"quote", []string{`say "hi"`, `"`, `""`}},
		{"CR LF", []string{"a\r\nb", "a\nb", "a\rb", "\r", "\n"}},
		{"leading space", []string{" a", "\ta", "\u00a0a", "\u2003a", "a "}},
		{"backslash dot", []string{`\.`, `\.x`, `.`}},
		{"semicolon and tab", []string{"a;b", "a\tb"}},
		{"accents", []string{"Société Générale d'Équipement", "+33142685300"}},
		{"invalid UTF-8", []string{"\xff", "\xe9t\xe9", " \xff"}},
		{"formula", []string{"=1+2", "+33", "@x", "-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := viaEncodingCSV(t, tt.rec)
			if got := appendRow(nil, tt.rec); !bytes.Equal(got, want) {
				t.Errorf("appendRow(%q) = %q, encoding/csv writes %q", tt.rec, got, want)
			}
		})
	}
}

// FuzzAppendRow checks the hand-written writer against encoding/csv for
// arbitrary fields, alone and side by side.
func FuzzAppendRow(f *testing.F) {
	f.Add("a", "b,c", `d"e`)
	f.Add(" lead", "\r\n", "\\.")
	f.Add("", "", "")
	f.Add("\u00a0x", "\xff", "x\ry\nz")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		for _, rec := range [][]string{{a}, {a, b, c}, {c, "", b}} {
			want := viaEncodingCSV(t, rec)
			if got := appendRow(nil, rec); !bytes.Equal(got, want) {
				t.Fatalf("appendRow(%q) = %q, encoding/csv writes %q", rec, got, want)
			}
		}
	})
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("disk full")
}

// TestCSVWriterStickyError: a failed write fails every later row and the
// flush, as bufio's sticky error did, and is not retried.
func TestCSVWriterStickyError(t *testing.T) {
	tests := []struct {
		name string
		rows int
	}{
		{"error at flush", 1},
		{"error while writing rows", 20000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fw := &failingWriter{}
			w := newCSVWriter(fw)
			row := []string{"Supplier, Inc.", "+33142685300", "contact@supplier.example"}
			var err error
			for range tt.rows {
				if err = w.writeRow(row); err != nil {
					break
				}
			}
			if ferr := w.flush(); ferr == nil || (err != nil && !errors.Is(ferr, err)) {
				t.Fatalf("flush: %v after row error %v", ferr, err)
			}
			if err := w.writeRow(row); err == nil {
				t.Fatal("a row after a failed write succeeded")
			}
			if fw.n != 1 {
				t.Fatalf("%d writes to a failed writer", fw.n)
			}
		})
	}
}
