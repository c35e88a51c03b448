package connector

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestKeyTable(t *testing.T) {
	long := strings.Repeat("k", maxChunkSize+10) // longer than a chunk
	tests := []struct {
		name string
		keys []string
	}{
		{"empty table", nil},
		{"the empty key", []string{""}},
		{"keys that share prefixes", []string{"a", "ab", "abc", "abcd", "b", "abd", "ab\x00", "a\x00b"}},
		{"a key longer than a chunk, between short ones", []string{"x", long, "y", long[:maxChunkSize-1]}},
		{"UUIDs (packed) next to keys that look like them (kept as is)", []string{
			"0f8fad5b-d9cb-469f-a165-70867728950e",
			"0F8FAD5B-D9CB-469F-A165-70867728950E", // uppercase: would not unpack to itself
			"0f8fad5b-d9cb-469f-a165-70867728950",  // one digit short
			"0f8fad5b-d9cb-469f-a165-70867728950e ",
			"0f8fad5bd-9cb-469f-a165-70867728950e",
			"0f8fad5b-d9cb-469f-a165-70867728950g",
			"00000000-0000-0000-0000-000000000000",
			"ffffffff-ffff-ffff-ffff-ffffffffffff",
			"7c9e6679-7425-40de-944b-e07fc1f90ae7",
		}},
		{"many keys: growth and chunks", func() []string {
			var k []string
			for i := range 50_000 {
				k = append(k, "uid="+strconv.Itoa(i)+",ou=suppliers")
				k = append(k, fmt.Sprintf("%08x-5c1e-4b8e-9a41-%012d", i, i))
			}
			return k
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kt keyTable
			for i, k := range tt.keys {
				id, added, err := kt.insert(k)
				if err != nil || !added || id != i {
					t.Fatalf("insert %.20q = %d, %v, %v; want %d, true, nil", k, id, added, err, i)
				}
			}
			if kt.len() != len(tt.keys) {
				t.Errorf("len %d, want %d", kt.len(), len(tt.keys))
			}
			for i, k := range tt.keys {
				if got := kt.lookup(k); got != i {
					t.Errorf("lookup %.20q = %d, want %d", k, got, i)
				}
				if got := kt.key(i); got != k {
					t.Errorf("key(%d) = %.20q, want %.20q", i, got, k)
				}
				// Again: the key is found, not added.
				if id, added, err := kt.insert(k); err != nil || added || id != i {
					t.Errorf("insert again %.20q = %d, %v, %v; want %d, false, nil", k, id, added, err, i)
				}
			}
			for _, k := range []string{"absent", "abcde", "a\x00", "uid=50000,ou=suppliers", long + "x"} {
				if got := kt.lookup(k); got != -1 && tt.keys[got] != k {
					t.Errorf("lookup %.20q = %d (%.20q)", k, got, tt.keys[got])
				}
			}
			if kt.len() != len(tt.keys) {
				t.Errorf("len %d after lookups, want %d", kt.len(), len(tt.keys))
			}
		})
	}
}

// TestKeyTableCollisions fills a table whose keys all share a tag and a
// home slot: every lookup goes down the probe sequence and compares keys.
func TestKeyTableCollisions(t *testing.T) {
	var kt keyTable
	// Only the seed decides the hash: find keys colliding under it.
	if _, _, err := kt.insert("seed"); err != nil {
		t.Fatal(err)
	}
	want := tagOf(kt.hash("seed"))
	home := int(kt.hash("seed")) & (minSlots - 1)
	keys := []string{"seed"}
	for i := 0; len(keys) < 20 && i < 50_000_000; i++ {
		k := strconv.Itoa(i)
		h := kt.hash(k)
		if tagOf(h) == want && int(h)&(minSlots-1) == home {
			keys = append(keys, k)
		}
	}
	if len(keys) < 3 {
		t.Skip("no colliding keys found")
	}
	for i, k := range keys[1:] {
		if id, added, err := kt.insert(k); err != nil || !added || id != i+1 {
			t.Fatalf("insert %q = %d, %v, %v", k, id, added, err)
		}
	}
	for i, k := range keys {
		if got := kt.lookup(k); got != i {
			t.Errorf("lookup %q = %d, want %d", k, got, i)
		}
	}
	if got := kt.lookup("not there"); got != -1 {
		t.Errorf("lookup of an absent key = %d", got)
	}
}

func TestEntryIndexAndFreshKeys(t *testing.T) {
	var x entryIndex
	for i, k := range []string{"k1", "k10", "k100"} {
		if err := x.put(k, indexed{status: stBound, Hash: Hash{byte(i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	// A second put of a key replaces its entry.
	if err := x.put("k10", indexed{status: stPending, Hash: Hash{9}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		key        string
		wantStatus uint8
		wantHash   byte
		wantNil    bool
	}{
		{"first", "k1", stBound, 1, false},
		{"replaced", "k10", stPending, 9, false},
		{"shares a prefix", "k100", stBound, 3, false},
		{"absent", "k1000", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			en := x.lookup(tt.key)
			if (en == nil) != tt.wantNil {
				t.Fatalf("lookup %q = %v", tt.key, en)
			}
			if en != nil && (en.status != tt.wantStatus || en.Hash[0] != tt.wantHash) {
				t.Errorf("lookup %q: status %d hash %d, want %d %d", tt.key, en.status, en.Hash[0], tt.wantStatus, tt.wantHash)
			}
		})
	}
	if x.len() != 3 {
		t.Errorf("len %d, want 3", x.len())
	}
	t.Run("marking", func(t *testing.T) {
		en := x.lookup("k100")
		if en.seen() {
			t.Fatal("seen before any mark")
		}
		en.setMark(mark{cat: catNone}) // a decision, even if to do nothing
		if !x.lookup("k100").seen() || x.lookup("k1").seen() {
			t.Error("marking one entry must mark it and only it")
		}
		en.setMark(mark{cat: catUpdate, seg: segRaw, seq: 7})
		if got := x.lookup("k100").mark(); got != (mark{cat: catUpdate, seg: segRaw, seq: 7}) {
			t.Errorf("mark %+v", got)
		}
	})
	t.Run("fresh keys", func(t *testing.T) {
		var f freshKeys
		buf := []byte("row-1;other columns")
		key := string(buf[:5])
		if err := f.put(key, mark{cat: catCreate, seq: 1}); err != nil {
			t.Fatal(err)
		}
		if err := f.put("row-12", mark{cat: catRejected}); err != nil {
			t.Fatal(err)
		}
		if err := f.put("row-1", mark{cat: catUpdate, seq: 2}); err != nil {
			t.Fatal(err)
		}
		if m := f.lookup("row-1"); m == nil || *m != (mark{cat: catUpdate, seq: 2}) {
			t.Errorf("row-1: %v", m)
		}
		if m := f.lookup("row-12"); m == nil || m.cat != catRejected {
			t.Errorf("row-12: %v", m)
		}
		if f.lookup("row-") != nil {
			t.Error("a prefix of a key found")
		}
		if f.keys.len() != 2 {
			t.Errorf("%d fresh keys, want 2", f.keys.len())
		}
	})
}

func TestSpoolEachHead(t *testing.T) {
	sp, err := newSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	var c, old Contact
	c[DisplayName], c[Email] = "Zoë", "zoe@example.org"
	old[DisplayName] = "Zoe"
	recs := []spoolRec{
		{action: ActionCreate, key: "k1", new: c, src: Hash{1}},
		{action: ActionUpdate, key: "k2", uuid: "u2", new: c, old: old, hasOld: true, flags: flagHeld, reason: "held"},
		{action: ActionDelete, key: "k3", uuid: "u3", reason: reasonGone, new: old},
		{action: ActionTouch, key: "", src: Hash{4}},
	}
	for i := range recs {
		seq, err := sp.write(segUpdate, &recs[i])
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			sp.supersede(segUpdate, seq)
		}
	}
	want := []spoolRec{recs[0], recs[1], recs[3]}
	tests := []struct {
		name     string
		read     func(int, func(*spoolRec) error) error
		contacts bool
	}{
		{"each", sp.each, true},
		{"eachHead", sp.eachHead, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var i int
			err := tt.read(segUpdate, func(r *spoolRec) error {
				w := want[i]
				if !tt.contacts {
					w.new, w.old = Contact{}, Contact{}
				}
				if *r != w {
					t.Errorf("record %d: %+v, want %+v", i, *r, w)
				}
				i++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if i != len(want) {
				t.Errorf("%d records, want %d", i, len(want))
			}
		})
	}
}

func TestPackUUID(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"0f8fad5b-d9cb-469f-a165-70867728950e", true},
		{"0f8fad5b-d9cb-469f-a165-70867728950E", false},
		{"0f8fad5b_d9cb-469f-a165-70867728950e", false},
		{"0f8fad5bd9cb469fa16570867728950e", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			b, ok := packUUID(tt.key)
			if ok != tt.want {
				t.Fatalf("packUUID ok = %v, want %v", ok, tt.want)
			}
			if ok {
				var s [36]byte
				unpackUUID(&s, b[:])
				if string(s[:]) != tt.key {
					t.Errorf("unpacked %q", s)
				}
			}
		})
	}
}
