package csvdrop

import (
	"fmt"
	"hash/maphash"
	"runtime"
	"strings"
	"testing"
)

func TestKeySet(t *testing.T) {
	constant := func(maphash.Seed, []byte) uint64 { return 42 }
	byLength := func(_ maphash.Seed, b []byte) uint64 { return uint64(len(b)) }
	long := strings.Repeat("k", maxArenaKey+1) // too long for the arena
	tests := []struct {
		name string
		hash func(maphash.Seed, []byte) uint64
		keys []string
	}{
		{"maphash", nil, []string{"A", "B", "A", "C", "B", "A", ""}},
		{"every hash collides", constant, []string{"A", "B", "A", "C", "B", "C", "D"}},
		{"some hashes collide", byLength, []string{"AA", "BB", "A", "AA", "BB", "CCC", "B", "A"}},
		{"key too long for the arena", nil, []string{long, "x", long, long + "y", long + "y"}},
		{"key too long, colliding", constant, []string{"x", long, long, "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := keySet{hash: tt.hash}
			want := map[string]int{}
			for i, k := range tt.keys {
				line := i + 2
				first, dup := s.add([]byte(k), line)
				w, wantDup := want[k]
				if dup != wantDup || (dup && first != w) {
					t.Fatalf("add(%.10q, %d) = %d, %v; want %d, %v", k, line, first, dup, w, wantDup)
				}
				if !wantDup {
					want[k] = line
				}
			}
		})
	}
}

// TestKeySetManyKeys crosses arena chunks: every key is found again with
// its first line, and no new key is taken for a duplicate.
func TestKeySetManyKeys(t *testing.T) {
	var s keySet
	const n = 200_000 // about 3 MB of keys: several chunks
	key := func(i int) []byte { return []byte(fmt.Sprintf("SUPPLIER-%08d", i)) }
	for i := range n {
		if _, dup := s.add(key(i), i+2); dup {
			t.Fatalf("key %d reported as a duplicate", i)
		}
	}
	if len(s.chunks) < 2 {
		t.Fatalf("%d chunks", len(s.chunks))
	}
	for i := range n {
		if first, dup := s.add(key(i), n+i); !dup || first != i+2 {
			t.Fatalf("key %d: first %d, dup %v", i, first, dup)
		}
	}
}

// BenchmarkKeySet adds 1,000,000 distinct keys, as a CRM drop's first run
// does, to the key set and to the map of cloned keys it replaced; live-B/key
// is the heap the set holds at the end.
func BenchmarkKeySet(b *testing.B) {
	const n = 1_000_000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("SUP-%07d", (i*7919)%n))
	}
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	base := heap()
	live := func(b *testing.B, keep func()) {
		b.ReportMetric(float64(heap()-base)/n, "live-B/key")
		keep()
	}
	b.Run("keySet", func(b *testing.B) {
		var s *keySet
		for b.Loop() {
			s = &keySet{}
			for i, k := range keys {
				s.add(k, i)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
		live(b, func() { runtime.KeepAlive(s) })
	})
	b.Run("map", func(b *testing.B) {
		var m map[string]int32
		for b.Loop() {
			m = make(map[string]int32)
			for i, k := range keys {
				if _, ok := m[string(k)]; !ok {
					m[string(k)] = int32(i)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
		live(b, func() { runtime.KeepAlive(m) })
	})
}
