package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestTable renders testdata/results.tsv and compares the table byte for
// byte with testdata/table.md (go test ./bench/gen -update rewrites it).
// The input has a host twice as fast in round 2 as in the others (so the
// medians' ratio is not the median of the rounds' own), a case without a
// baseline, and one whose rounds do not pair.
func TestTable(t *testing.T) {
	in, err := os.Open(filepath.Join("testdata", "results.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var got bytes.Buffer
	if err := writeTable(&got, in, "results.tsv"); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "table.md")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("table differs from %s (-update to rewrite):\n%s", golden, got.String())
	}
}

func TestTableBadInput(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"fields", "time\tc\tcontactsync\t1\t1.0\n", "results.tsv line 1: want time/case/who/round/seconds/rss"},
		{"seconds", "time\tc\tcontactsync\t1\tfast\t100\n", "results.tsv line 1: seconds:"},
		{"rss", "note\tc\tx\ntime\tc\tcontactsync\t1\t1.0\tbig\n", "results.tsv line 2: rss:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := writeTable(&bytes.Buffer{}, strings.NewReader(tc.in), "results.tsv")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
