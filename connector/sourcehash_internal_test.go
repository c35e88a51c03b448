package connector

import (
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"
)

// referenceSourceHash is Mapping.SourceHash as first written.
func referenceSourceHash(fingerprint Hash, r *Record) Hash {
	b := append([]byte(nil), fingerprint[:]...)
	str := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	str(r.Key)
	b = strconv.AppendInt(b, int64(len(r.Names)), 10)
	b = append(b, ';')
	for i, n := range r.Names {
		str(n)
		v := ""
		if i < len(r.Values) {
			v = r.Values[i]
		}
		str(v)
	}
	sum := sha256.Sum256(b)
	var h Hash
	copy(h[:], sum[:16])
	return h
}

// TestSourceHashStable pins source hashes, which are stored in state
// files, as the code before the hand-written buffer gave them, for a fixed
// fingerprint (the real one depends on the build), and
// checks them against the reference implementation.
func TestSourceHashStable(t *testing.T) {
	manyNames := make([]string, 120)
	for i := range manyNames {
		manyNames[i] = "a" + strconv.Itoa(i)
	}
	tests := []struct {
		name string
		r    Record
		want string
	}{
		{"empty", Record{}, "e4af1a93bf34664d44990bc3b53d25dc"},
		{"typical", *benchRecords(1, false)[0], "8a29a13604e6d8153cbb4b2101ec9683"},
		{"fewer values than names", Record{Key: "k", Names: []string{"cn", "sn", "mail"}, Values: []string{"Jean"}}, "76284c8e1d7d8ce8150ebe520b794dd2"},
		{"lengths of 9, 10, 99 and 100", Record{Key: strings.Repeat("k", 9), Names: []string{strings.Repeat("n", 10), "x"},
			Values: []string{strings.Repeat("v", 99), strings.Repeat("w", 100)}}, "fcc2c1a896d7e7f2a9fc3e6790c2ed47"},
		{"key of 100", Record{Key: strings.Repeat("k", 100)}, "a6b1e7d329af490bf07a83f0131a7af6"},
		{"120 names", Record{Key: "k", Names: manyNames}, "e9ee201d3a45c293e4ba723269748e5f"},
		{"beyond the stack buffer", Record{Key: "k", Names: []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m"},
			Values: strings.Split(strings.Repeat(strings.Repeat("é", 45)+"|", 13), "|")}, "d86ed97020e472be1236a1d25662de45"},
	}
	m := &Mapping{fingerprint: Hash{0: 1, 7: 0x7f, 15: 0xff}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.SourceHash(&tt.r)
			if ref := referenceSourceHash(m.fingerprint, &tt.r); got != ref {
				t.Errorf("SourceHash = %s, reference %s", got, ref)
			}
			if got.String() != tt.want {
				t.Errorf("SourceHash = %s, want %s", got, tt.want)
			}
		})
	}
}

// BenchmarkSourceHash is the per-record cost of the source hash, which the
// mapping workers compute for every record.
func BenchmarkSourceHash(b *testing.B) {
	cfg := benchMapping()
	m, err := cfg.Compile()
	if err != nil {
		b.Fatal(err)
	}
	rs := benchRecords(64, false)
	b.ReportAllocs()
	var sink Hash
	for i := 0; i < b.N; i++ {
		sink = m.SourceHash(rs[i%len(rs)])
	}
	_ = sink
}
