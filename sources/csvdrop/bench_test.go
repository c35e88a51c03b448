package csvdrop

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/contactsync/contactsync/connector"
	"golang.org/x/text/encoding/charmap"
)

type nopEmitter struct{}

func (nopEmitter) Record(*connector.Record) error          { return nil }
func (nopEmitter) Reject(key, origin, reason string) error { return nil }
func (nopEmitter) Delete(key, origin string) error         { return nil }

// writeCRMExport writes a Windows-1252, ';'-separated CRM export of n rows,
// with accents and a quoted field on every row, as the real ones have.
func writeCRMExport(tb testing.TB, path string, n int) int64 {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(charmap.Windows1252.NewEncoder().Writer(f))
	fmt.Fprint(w, "Supplier ID;Raison sociale;Prénom;Nom;Téléphone;Mobile;E-mail;Fonction;Société;Rue;Ville;Code postal;Pays\r\n")
	for i := range n {
		fmt.Fprintf(w, "SUP-%07d;\"Société Générale; agence %d\";Hélène;Dupré-%d;+33 1 42 14 %02d %02d;+33 6 12 34 %02d %02d;contact%d@fournisseur.fr;Responsable achats;Société %d;%d rue de la Paix;Besançon;25000;France\r\n",
			i, i, i, i%100, (i/100)%100, (i/7)%100, i%97, i, i%5000, i%300)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return fi.Size()
}

// BenchmarkReadFile reads a 100,000-row export into an emitter that does
// nothing: the cost of decoding and parsing alone.
func BenchmarkReadFile(b *testing.B) {
	const rows = 100_000
	path := filepath.Join(b.TempDir(), "crm.csv")
	size := writeCRMExport(b, path, rows)
	opt := &readOptions{key: "supplier id", keyLabel: "Supplier ID", encoding: encAuto}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		st, err := readFile(context.Background(), "crm.csv", f, opt, 0, nopEmitter{})
		f.Close()
		if err != nil || st.records != rows {
			b.Fatalf("%d records, %v", st.records, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}
