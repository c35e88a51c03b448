package connector

import (
	"slices"
	"strings"
	"testing"
)

func TestSafetyGuard(t *testing.T) {
	def := (&SafetyConfig{}).Safety()
	tests := []struct {
		name                     string
		s                        Safety
		deletes, managed, source int
		complete                 bool
		wantBlocked              bool
		wantIn                   string
	}{
		{"nothing to delete", def, 0, 100, 100, true, false, ""},
		{"10% exactly", def, 10, 100, 90, true, false, ""},
		{"one over 10%", def, 11, 100, 89, true, true, "max_delete_percent"},
		{"500 exactly", Safety{MaxDeletes: 500, MaxDeletePercent: 100, MinSourceRecords: 1}, 500, 1000, 500, true, false, ""},
		{"501", Safety{MaxDeletes: 500, MaxDeletePercent: 100, MinSourceRecords: 1}, 501, 1000, 499, true, true, "max_deletes 500"},
		{"empty complete source", def, 0, 0, 0, true, true, "min_source_records"},
		{"empty incremental pull is fine", def, 0, 100, 0, false, false, ""},
		{"first run manages nothing", def, 0, 0, 5, true, false, ""},
		{"both reasons", Safety{MaxDeletes: 1, MaxDeletePercent: 10, MinSourceRecords: 1}, 2, 3, 1, true, true, "max_deletes 1; 2 deletes are 66.7%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why := tt.s.guard(tt.deletes, tt.managed, tt.source, tt.complete)
			if (why != "") != tt.wantBlocked || !strings.Contains(why, tt.wantIn) {
				t.Errorf("guard = %q, want blocked=%v containing %q", why, tt.wantBlocked, tt.wantIn)
			}
		})
	}
}

func TestMatcher(t *testing.T) {
	contact := func(name, phone, email string) *Contact {
		var c Contact
		c[DisplayName], c[Phone1], c[Phone1Type], c[Email] = name, phone, "work", email
		return &c
	}
	m := newMatcher("FR")
	m.add("u1", "", contact("Élodie Lefèvre", "+33 1 42 68 53 00", ""))
	m.add("u2", "", contact("Jean  Martin", "", "JEAN@example.com"))
	m.add("u3", "", contact("Twin", "+33100000001", ""))
	m.add("u4", "", contact("Twin", "01 00 00 00 01", ""))
	tests := []struct {
		name string
		c    *Contact
		want string
	}{
		{"phone in another shape", contact("Élodie Lefèvre", "0142685300", ""), "u1"},
		{"name case and spaces", contact("élodie  lefèvre", "+33142685300", ""), "u1"},
		{"email, any case", contact("Jean Martin", "+33600000000", "jean@example.com"), "u2"},
		{"same phone, other name", contact("Someone Else", "+33142685300", ""), ""},
		{"ambiguous: two contacts share the key", contact("Twin", "+33100000001", ""), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if i := m.find(tt.c); i >= 0 {
				got = m.items[i].uuid
			}
			if got != tt.want {
				t.Errorf("find = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSpoolRoundTripAndSupersede(t *testing.T) {
	sp, err := newSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	var c Contact
	c[DisplayName], c[AddressStreet] = "Zoë \"quoted\"", "line 1\nline 2"
	for i, key := range []string{"a", "b", "a"} {
		seq, err := sp.write(segCreate, &spoolRec{action: ActionCreate, key: key, reason: "r", new: c})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			sp.supersede(segCreate, seq)
		}
	}
	var keys []string
	if err := sp.each(segCreate, func(r *spoolRec) error {
		if r.new != c {
			t.Errorf("contact did not round-trip: %q", r.new)
		}
		keys = append(keys, r.key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "b,a" {
		t.Errorf("keys %v, want b,a (the first a superseded)", keys)
	}
}

// The staging goroutine skips reading the spool again when every change
// was staged during the pull: the count must see any record that was not.
func TestSpoolAnyUnstaged(t *testing.T) {
	type write struct {
		seg    int
		staged bool
	}
	tests := []struct {
		name   string
		writes []write
		want   bool
	}{
		{name: "empty", want: false},
		{name: "all staged", writes: []write{{segCreate, true}, {segCreate, true}}, want: false},
		{name: "one create not staged", writes: []write{{segCreate, true}, {segCreate, false}}, want: true},
		{name: "a touch", writes: []write{{segCreate, true}, {segTouch, false}}, want: true},
		{name: "a rejection is not a change", writes: []write{{segCreate, true}, {segReject, false}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, err := newSpool(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer sp.close()
			for _, w := range tt.writes {
				rec := &spoolRec{action: ActionCreate, key: "k"}
				if w.staged {
					rec.flags = flagStaged
				}
				if _, err := sp.write(w.seg, rec); err != nil {
					t.Fatal(err)
				}
			}
			if got := sp.anyUnstaged(segCreate, segUpdate, segDelete, segTouch); got != tt.want {
				t.Errorf("anyUnstaged = %v, want %v", got, tt.want)
			}
			if err := sp.reset(segCreate); err != nil {
				t.Fatal(err)
			}
			if got := sp.anyUnstaged(segCreate); got {
				t.Error("anyUnstaged after reset = true")
			}
		})
	}
}

// The stored contents must stay byte for byte what earlier versions wrote:
// the same escapes (encoding/json's of Go 1.21, \u00XX for \b and \f).
func TestContactMarshalEscapes(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"Élodie Lefèvre", `"Élodie Lefèvre"`},
		{`Müller & "Fils" <b>`, `"Müller \u0026 \"Fils\" \u003cb\u003e"`},
		{"a\\b", `"a\\b"`},
		{"l1\nl2\r\tx", `"l1\nl2\r\tx"`},
		{"\x00\b\f\x1f\x7f", `"\u0000\u0008\u000c\u001f` + "\x7f" + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var c Contact
			c[DisplayName], c[Group5] = tt.in, tt.in
			want := "[" + tt.want + strings.Repeat(`,""`, int(NumFields)-2) + "," + tt.want + "]"
			if got := string(c.Marshal()); got != want {
				t.Errorf("Marshal = %s\nwant      %s", got, want)
			}
			back, err := UnmarshalContact(c.Marshal())
			if err != nil || back != c {
				t.Errorf("round trip: %q, %v", back, err)
			}
		})
	}
}

func TestContactMarshalRoundTrip(t *testing.T) {
	var c Contact
	c[DisplayName] = "Ça \"va\" <b> & \\ \t\x01"
	c[Group5] = "last"
	got, err := UnmarshalContact(c.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got != c {
		t.Errorf("round trip: %q, want %q", got, c)
	}
	d := c
	d[Group5] = "other"
	if c.Hash() == d.Hash() {
		t.Error("different contacts share a hash")
	}
	// Length prefixes keep field boundaries apart.
	var e, f Contact
	e[DisplayName], e[FirstName] = "ab", "c"
	f[DisplayName], f[FirstName] = "a", "bc"
	if e.Hash() == f.Hash() {
		t.Error("shifted field boundary gives the same hash")
	}
}

func TestTemplateHeader(t *testing.T) {
	h := TemplateHeader()
	if len(h) != 28 || h[0] != "Display Name" || h[1] != "Contact UUID" || h[27] != "Group ID 5" {
		t.Errorf("header %v", h)
	}
}

// The hold file gives back every record as it was handed over, in order,
// whatever its names, values and sizes.
func TestHoldFileRoundTrip(t *testing.T) {
	long := strings.Repeat("é", 200<<10) // past the file's 256 KB buffers
	tests := []struct {
		name string
		recs []Record
	}{
		{"empty", nil},
		{"same names", []Record{
			{Key: "a", Origin: "f.csv:2", Names: []string{"id", "cn"}, Values: []string{"a", "Alice"}},
			{Key: "b", Origin: "f.csv:3", Names: []string{"id", "cn"}, Values: []string{"b", ""}},
		}},
		{"names change", []Record{
			{Key: "a", Names: []string{"id", "cn"}, Values: []string{"a", "Alice"}},
			{Key: "b", Names: []string{"id", "sn", "mail"}, Values: []string{"b", "Bob", "b@x"}},
			{Key: "c", Names: nil, Values: nil},
			{Key: "d", Names: []string{"id", "sn", "mail"}, Values: []string{"d", long, "d@x"}},
			{Key: "", Origin: "", Names: []string{""}, Values: []string{""}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := newHoldFile(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer h.close()
			for round := range 2 { // the file is empty again after a replay
				for i := range tt.recs {
					if err := h.add(&tt.recs[i]); err != nil {
						t.Fatal(err)
					}
				}
				var got []Record
				if err := h.replay(func(r *Record) error {
					got = append(got, Record{Key: r.Key, Origin: r.Origin, Names: slices.Clone(r.Names), Values: slices.Clone(r.Values)})
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tt.recs) {
					t.Fatalf("round %d: %d records, want %d", round, len(got), len(tt.recs))
				}
				for i, r := range got {
					w := tt.recs[i]
					if r.Key != w.Key || r.Origin != w.Origin || !slices.Equal(r.Names, w.Names) || !slices.Equal(r.Values, w.Values) {
						t.Errorf("round %d record %d: %q %q (%d values), want %q %q (%d values)", round, i, r.Key, r.Names, len(r.Values), w.Key, w.Names, len(w.Values))
					}
				}
			}
		})
	}
}
