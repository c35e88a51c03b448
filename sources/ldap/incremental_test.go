package ldap

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sources/ldap/ldaptest"
	goldap "github.com/go-ldap/ldap/v3"
)

var ouSeq atomic.Int64

// testEntry is an entry a test adds to the directory.
type testEntry struct {
	dn    string
	attrs map[string][]string
}

// addOU adds a fresh OU under the suffix, then the entries entries(base)
// gives, in order, and returns the OU's DN. A fresh OU per test keeps the
// tests independent of each other and of -count.
func addOU(t *testing.T, s *ldaptest.Slapd, entries func(base string) []testEntry) string {
	t.Helper()
	c, err := s.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base := fmt.Sprintf("ou=t%d,%s", ouSeq.Add(1), s.Suffix)
	ou, _, _ := strings.Cut(strings.TrimPrefix(base, "ou="), ",")
	addEntries(t, c, testEntry{base, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {ou}}})
	addEntries(t, c, entries(base)...)
	return base
}

// addEntries adds entries through c, in order.
func addEntries(t *testing.T, c *goldap.Conn, entries ...testEntry) {
	t.Helper()
	for _, e := range entries {
		req := goldap.NewAddRequest(e.dn, nil)
		for k, v := range e.attrs {
			req.Attribute(k, v)
		}
		if err := c.Add(req); err != nil {
			t.Fatalf("add %s: %v", e.dn, err)
		}
	}
}

// makeOU adds a fresh OU holding alice, bob, carol, dave and erin, plus an
// empty sub-OU "moved", and returns its DN.
func makeOU(t *testing.T, s *ldaptest.Slapd) string {
	t.Helper()
	return addOU(t, s, func(base string) []testEntry {
		out := []testEntry{{"ou=moved," + base, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"moved"}}}}
		for i, n := range []string{"alice", "bob", "carol", "dave", "erin"} {
			out = append(out, testEntry{"uid=" + n + "," + base, map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {n}, "cn": {n}, "sn": {n},
				"telephoneNumber": {fmt.Sprintf("+33 2 00 00 00 %02d", i)}}})
		}
		return out
	})
}

// change applies the directory changes a night may bring: a modify, a
// rename, a move inside the base, a move out of it, a delete, an add, and
// an add that the filter does not select.
func change(t *testing.T, s *ldaptest.Slapd, base string) {
	t.Helper()
	c, err := s.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mod := goldap.NewModifyRequest("uid=alice,"+base, nil)
	mod.Replace("telephoneNumber", []string{"+33 2 99 99 99 99"})
	mod.Replace("cn", []string{"Alice Renamed-CN"})
	steps := []struct {
		what string
		do   func() error
	}{
		{"modify alice", func() error { return c.Modify(mod) }},
		{"rename bob", func() error { return c.ModifyDN(goldap.NewModifyDNRequest("uid=bob,"+base, "uid=robert", false, "")) }},
		{"move carol", func() error {
			return c.ModifyDN(goldap.NewModifyDNRequest("uid=carol,"+base, "uid=carol", true, "ou=moved,"+base))
		}},
		{"move erin out", func() error {
			return c.ModifyDN(goldap.NewModifyDNRequest("uid=erin,"+base, "uid=erin-"+strings.Split(base, ",")[0][3:], true, "ou=service,"+s.Suffix))
		}},
		{"delete dave", func() error { return c.Del(goldap.NewDelRequest("uid=dave,"+base, nil)) }},
		{"add frank", func() error {
			r := goldap.NewAddRequest("uid=frank,"+base, nil)
			r.Attribute("objectClass", []string{"inetOrgPerson"})
			r.Attribute("uid", []string{"frank"})
			r.Attribute("cn", []string{"Frank Nouveau"})
			r.Attribute("sn", []string{"Nouveau"})
			return c.Add(r)
		}},
		{"add a room", func() error {
			r := goldap.NewAddRequest("cn=room,"+base, nil)
			r.Attribute("objectClass", []string{"organizationalRole"})
			r.Attribute("cn", []string{"room"})
			return c.Add(r)
		}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
	}
}

func TestIncrementalEquivalence(t *testing.T) {
	tests := []struct {
		name       string
		sessionLog bool
	}{
		{"syncprov with session log: delete phase", true},
		{"syncprov without session log: present phase", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := slapd(t)
			if !tt.sessionLog {
				s = ldaptest.StartSlapd(t, ldaptest.SlapdOptions{})
			}
			base := makeOU(t, s)
			src, lb := open(t, readerConfig(t, s, base))

			res0, r0 := doPull(t, src, connector.PullRequest{Attributes: mapped})
			if len(r0.records) != 5 || !res0.Complete {
				t.Fatalf("first pull: %d records, complete=%v", len(r0.records), res0.Complete)
			}
			// The engine then looks up the keys of the next pull only.
			if !src.Incremental(connector.PullRequest{Cursor: res0.Cursor, Attributes: mapped}) {
				t.Errorf("the cursor of a full pull does not announce an incremental one: %s", res0.Cursor)
			}
			prev := population(nil, res0, r0)
			keyOf := map[string]string{}
			for k, dn := range r0.origins {
				keyOf[dn] = k
			}

			change(t, s, base)
			res1, r1 := doPull(t, src, connector.PullRequest{Cursor: res0.Cursor, Attributes: mapped})
			if res1.Cursor == nil {
				t.Fatal("incremental pull returned no cursor")
			}
			if res1.Complete == tt.sessionLog {
				t.Fatalf("Complete = %v; log:\n%s", res1.Complete, lb)
			}
			if tt.sessionLog {
				// Only what changed is read, and deletions are named.
				wantDeletes := []string{keyOf["uid=dave,"+base], keyOf["uid=erin,"+base]}
				if got := strings.Join(slices.Sorted(slices.Values(r1.deletes)), ","); got != strings.Join(slices.Sorted(slices.Values(wantDeletes)), ",") {
					t.Errorf("deletes = %v, want dave and erin %v", r1.deletes, wantDeletes)
				}
				if len(r1.records) != 4 {
					t.Errorf("incremental records = %v, want alice, bob, carol, frank", r1.origins)
				}
			}
			// A rename or a move keeps the key.
			for old, now := range map[string]string{"uid=bob,": "uid=robert,", "uid=carol,": "uid=carol,ou=moved,"} {
				if got := r1.origins[keyOf[old+base]]; got != now+base {
					t.Errorf("%s%s: key %s now at %q, want %q", old, base, keyOf[old+base], got, now+base)
				}
			}

			resFull, rFull := doPull(t, src, connector.PullRequest{Full: true, Attributes: mapped})
			want := population(nil, resFull, rFull)
			got := population(prev, res1, r1)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("incremental population differs from a full pull:\n got %v\nwant %v", got, want)
			}
			if want[keyOf["uid=alice,"+base]]["cn"] != "Alice Renamed-CN" {
				t.Errorf("alice not updated: %v", want[keyOf["uid=alice,"+base]])
			}

			// Nothing changed since: an incremental pull reads nothing.
			res2, r2 := doPull(t, src, connector.PullRequest{Cursor: res1.Cursor, Attributes: mapped})
			if tt.sessionLog && (res2.Complete || len(r2.records) != 0 || len(r2.deletes) != 0) {
				t.Errorf("pull without changes: complete=%v records=%v deletes=%v", res2.Complete, r2.origins, r2.deletes)
			}
			if got := population(want, res2, r2); !reflect.DeepEqual(got, want) {
				t.Errorf("pull without changes changed the population")
			}
		})
	}
}

func TestFallbackToFull(t *testing.T) {
	s := slapd(t)
	base := makeOU(t, s)
	cfg := readerConfig(t, s, base)
	src, _ := open(t, cfg)
	res0, _ := doPull(t, src, connector.PullRequest{Attributes: mapped})
	var cur cursor
	if err := json.Unmarshal(res0.Cursor, &cur); err != nil || cur.Mode != modeSyncrepl || !strings.HasPrefix(cur.Cookie, "rid=000,csn=") {
		t.Fatalf("cursor %s: %v", res0.Cursor, err)
	}
	edit := func(f func(c *cursor)) []byte {
		c := cur
		f(&c)
		return c.encode()
	}
	off := cfg
	off.Incremental = "off"
	tests := []struct {
		name     string
		cfg      Config
		req      connector.PullRequest
		complete bool
		cursor   bool
		log      string
	}{
		{"incremental", cfg, connector.PullRequest{Cursor: res0.Cursor}, false, true, "incremental sync refresh"},
		// syncprov answers 53 "consumer state is newer than provider" to a
		// cookie from the future, as after a restore from an older backup.
		{"cookie refused", cfg, connector.PullRequest{Cursor: edit(func(c *cursor) {
			c.Cookie = "rid=000,csn=20991231000000.000000Z#000000#000#000000"
		})}, true, true, "server refused the sync cookie"},
		{"another directory", cfg, connector.PullRequest{Cursor: edit(func(c *cursor) { c.Server = "00000000-0000-0000-0000-000000000000" })}, true, true, "another directory"},
		{"filter or attributes changed", cfg, connector.PullRequest{Cursor: edit(func(c *cursor) { c.Scope = "other" })}, true, true, "base, filter, key or attributes changed"},
		{"unreadable cursor", cfg, connector.PullRequest{Cursor: []byte("not json")}, true, true, "cursor unreadable"},
		{"sync --full", cfg, connector.PullRequest{Cursor: res0.Cursor, Full: true}, true, true, "full pull requested"},
		{"peek", cfg, connector.PullRequest{Cursor: res0.Cursor, Peek: true}, true, true, "reason=peek"},
		{"incremental off", off, connector.PullRequest{Cursor: res0.Cursor}, true, false, "incremental off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, lb := open(t, tt.cfg)
			tt.req.Attributes = mapped
			res, r := doPull(t, src, tt.req)
			if res.Complete != tt.complete || (res.Cursor != nil) != tt.cursor {
				t.Errorf("Complete=%v cursor=%s, want %v and a cursor: %v", res.Complete, res.Cursor, tt.complete, tt.cursor)
			}
			if tt.complete && len(r.records) != 5 {
				t.Errorf("full pull gave %d records, want 5", len(r.records))
			}
			if !strings.Contains(lb.String(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, lb)
			}
			if tt.complete && tt.cursor {
				// The cursor a fallback returns works for the next pull.
				res2, _ := doPull(t, src, connector.PullRequest{Cursor: res.Cursor, Attributes: mapped})
				if res2.Complete {
					t.Error("the pull after a fallback was not incremental")
				}
			}
		})
	}
}

// TestIncrementalAnnounced: a pull announces itself incremental only with
// a cursor of this source's and nothing asking for everything.
func TestIncrementalAnnounced(t *testing.T) {
	syncrepl := []byte(`{"v":1,"mode":"syncrepl","server":"s","scope":"x","cookie":"rid=000,csn=1"}`)
	usn := []byte(`{"v":1,"mode":"usn","server":"s","scope":"x","usn":42}`)
	tests := []struct {
		name string
		off  bool
		req  connector.PullRequest
		want bool
	}{
		{"syncrepl cursor", false, connector.PullRequest{Cursor: syncrepl}, true},
		{"usn cursor", false, connector.PullRequest{Cursor: usn}, true},
		{"no cursor", false, connector.PullRequest{}, false},
		{"full", false, connector.PullRequest{Cursor: syncrepl, Full: true}, false},
		{"peek", false, connector.PullRequest{Cursor: syncrepl, Peek: true}, false},
		{"limit", false, connector.PullRequest{Cursor: syncrepl, Limit: 5}, false},
		{"unreadable cursor", false, connector.PullRequest{Cursor: []byte("{")}, false},
		{"cursor of another version", false, connector.PullRequest{Cursor: []byte(`{"v":2,"mode":"usn"}`)}, false},
		{"incremental off", true, connector.PullRequest{Cursor: syncrepl}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{URL: "ldap://127.0.0.1:1", BaseDN: "dc=example,dc=org"}
			if tt.off {
				cfg.Incremental = "off"
			}
			src, _ := open(t, cfg)
			if got := src.Incremental(tt.req); got != tt.want {
				t.Errorf("Incremental = %v, want %v", got, tt.want)
			}
		})
	}
}
