package ldap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sources/ldap/ldaptest"
	goldap "github.com/go-ldap/ldap/v3"
)

// pullBoth reads src's base with go-ldap's paged search (the path the lean
// client replaced for full pulls, still used by the USN changes search)
// and with the lean one, and returns what each emitted, in order.
func pullBoth(t *testing.T, src *Source, req connector.PullRequest) (lean, ref []string) {
	t.Helper()
	ctx := context.Background()
	conn, err := src.connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d, err := src.readRootDSE(conn)
	if err != nil {
		t.Fatal(err)
	}
	key := src.key(d)
	attrs := attributes(req, key)
	run := func(lean bool) []string {
		r := &eventRecorder{}
		p := &pull{s: src, conn: conn, dse: d, key: key, attrs: attrs, emit: r}
		if lean {
			err = p.pagedLean(ctx, "search", src.cfg.BaseDN, src.cfg.Filter, attrs)
		} else {
			err = p.paged(ctx, "search", src.cfg.BaseDN, src.cfg.Filter, attrs, nil, p.entry)
		}
		if err != nil {
			t.Fatalf("lean=%v: %v", lean, err)
		}
		return r.events
	}
	return run(true), run(false)
}

func checkSame(t *testing.T, lean, ref []string, min int) {
	t.Helper()
	if len(ref) < min {
		t.Fatalf("go-ldap's path emitted %d events, want at least %d: %q", len(ref), min, ref)
	}
	if !slices.Equal(lean, ref) {
		for i := range max(len(lean), len(ref)) {
			var l, r string
			if i < len(lean) {
				l = lean[i]
			}
			if i < len(ref) {
				r = ref[i]
			}
			if l != r {
				t.Fatalf("event %d differs (%d lean, %d go-ldap events):\n lean   %s\n go-ldap %s", i, len(lean), len(ref), l, r)
			}
		}
	}
}

// odditiesOU adds an OU of entries with what a decoder can get wrong:
// binary and non-UTF-8 values, several values, accents, an empty
// attribute list beyond the key, and a value larger than the read buffer.
func odditiesOU(t *testing.T, s *ldaptest.Slapd) string {
	t.Helper()
	return addOU(t, s, func(base string) []testEntry {
		return []testEntry{
			{"uid=bin," + base, map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {"bin"}, "cn": {"Binary"}, "sn": {"B"},
				"jpegPhoto": {"\xff\xd8\xff\xe0\x00\x10JFIF\x00"}, "mail": {"b1@x.example", "b2@x.example"}}},
			{"uid=élodie," + base, map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {"élodie"}, "cn": {"Élodie Crétin"}, "sn": {"Crétin"},
				"o": {"Société Générale des Pièces"}, "telephoneNumber": {"+33 4 11 22 33 44", "+33 4 11 22 33 45", "+33 4 11 22 33 46"}}},
			{"uid=big," + base, map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {"big"}, "cn": {"Big"}, "sn": {"B"},
				"description": {strings.Repeat("0123456789", 10000)}}},
			{"uid=bare," + base, map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {"bare"}, "cn": {"Bare"}, "sn": {"B"}}},
		}
	})
}

// TestLeanMatchesGoLDAP: against slapd, the lean full pull emits exactly
// what go-ldap's path emits.
func TestLeanMatchesGoLDAP(t *testing.T) {
	s := slapd(t)
	odd := odditiesOU(t, s)
	tests := []struct {
		name     string
		base     string
		key      string
		pageSize int
		req      connector.PullRequest
		min      int
		want     []string // in some event
	}{
		{"people, mapped attributes", people, "", 0, connector.PullRequest{Attributes: mapped}, 3, nil},
		{"people, all attributes", people, "", 0, connector.PullRequest{AllAttributes: true}, 3, nil},
		{"bulk, pages of 100", bulk, "", 100, connector.PullRequest{Attributes: []string{"cn", "mail"}}, 1200, nil},
		{"oddities, all attributes", odd, "", 2, connector.PullRequest{AllAttributes: true}, 4,
			[]string{`jpegphoto="ffd8ffe000104a46494600"`, `mail="b1@x.example"`, `o="Société Générale des Pièces"`, `telephonenumber="+33 4 11 22 33 44"`, `description="0123456789`}},
		{"oddities, names in other cases", odd, "", 0, connector.PullRequest{Attributes: []string{"JPEGPhoto", "Mail", "telephonenumber", "CN", "description"}}, 4, nil},
		{"oddities, key mail (rejects)", odd, "mail", 0, connector.PullRequest{Attributes: []string{"cn", "jpegphoto"}}, 4,
			[]string{`record "b1@x.example"`, `has no mail attribute (the key)`}},
		{"oddities, binary key", odd, "jpegPhoto", 0, connector.PullRequest{Attributes: []string{"cn"}}, 4,
			[]string{`record "ffd8ffe000104a46494600"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := readerConfig(t, s, tt.base)
			cfg.Key, cfg.PageSize = tt.key, tt.pageSize
			src, _ := open(t, cfg)
			lean, ref := pullBoth(t, src, tt.req)
			checkSame(t, lean, ref, tt.min)
			all := strings.Join(lean, "\n")
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("no event holds %s", w)
				}
			}
		})
	}
}

// cancelEmitter cancels the pull's context after n records.
type cancelEmitter struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelEmitter) Record(*connector.Record) error {
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return nil
}
func (c *cancelEmitter) Reject(_, _, _ string) error { return nil }
func (c *cancelEmitter) Delete(_, _ string) error    { return nil }

func TestLeanCancel(t *testing.T) {
	s := slapd(t)
	cfg := readerConfig(t, s, bulk)
	cfg.PageSize = 100
	src, _ := open(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := &cancelEmitter{n: 10, cancel: cancel}
	res, err := src.Pull(ctx, connector.PullRequest{Attributes: []string{"cn"}, Full: true}, e)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "ldap: search on "+s.URL) {
		t.Errorf("error = %v, want the search's context.Canceled", err)
	}
	if res.Complete || -e.n >= 1200-10 {
		t.Errorf("Complete=%v after %d records: the cancelled pull went on", res.Complete, 10-e.n)
	}
}

// swallowProxy forwards connections to target, except that on the second
// one (the lean search connection) it passes only the client's first
// message (the bind) and swallows the rest: the server never hears the
// search, so the client waits for an answer that does not come.
func swallowProxy(t *testing.T, target string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(c, up) }()
			go func(swallow bool) {
				defer wg.Done()
				if !swallow {
					io.Copy(up, c)
					return
				}
				f := newFramer(c)
				for i := 0; ; i++ {
					msg, err := f.next()
					if err != nil {
						return
					}
					if i == 0 {
						up.Write(msg)
					}
				}
			}(n == 2)
		}
	}()
	return "ldap://" + ln.Addr().String()
}

func TestLeanTimeout(t *testing.T) {
	s := slapd(t)
	cfg := readerConfig(t, s, people)
	cfg.URL, cfg.StartTLS, cfg.CAFile = swallowProxy(t, strings.TrimPrefix(s.URL, "ldap://")), false, ""
	cfg.Timeout = 300 * time.Millisecond
	src, _ := open(t, cfg)
	_, err := src.Pull(context.Background(), connector.PullRequest{Attributes: mapped, Full: true}, newRecorder())
	want := "ldap: search on " + cfg.URL + ": no answer from the server for 300ms (timeout)"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant %s", err, want)
	}
}

// TestLeanReferrals: a reference inside the base is skipped (and logged),
// a base that is itself a referral is an error, as on go-ldap's path.
func TestLeanReferrals(t *testing.T) {
	s := slapd(t)
	base := makeOU(t, s)
	c, err := s.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	elsewhere := "ou=elsewhere," + base
	req := goldap.NewAddRequest(elsewhere, nil)
	req.Attribute("objectClass", []string{"referral", "extensibleObject"})
	req.Attribute("ou", []string{"elsewhere"})
	req.Attribute("ref", []string{"ldap://other.example/" + elsewhere})
	if err := c.Add(req); err != nil {
		t.Fatalf("add %s: %v", elsewhere, err)
	}

	t.Run("reference inside the base", func(t *testing.T) {
		src, lb := open(t, readerConfig(t, s, base))
		lean, ref := pullBoth(t, src, connector.PullRequest{Attributes: []string{"cn"}})
		checkSame(t, lean, ref, 5)
		if !strings.Contains(lb.String(), "search reference skipped") || !strings.Contains(lb.String(), "ldap://other.example/") {
			t.Errorf("the log lacks the skipped reference:\n%s", lb)
		}
	})
	t.Run("base is a referral", func(t *testing.T) {
		src, _ := open(t, readerConfig(t, s, elsewhere))
		_, err := src.Pull(context.Background(), connector.PullRequest{Attributes: []string{"cn"}, Full: true}, newRecorder())
		want := fmt.Sprintf("ldap: search on %s: the server refers base DN %q to another server (LDAP result 10)", s.URL, elsewhere)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v\nwant it to contain %s", err, want)
		}
	})
}
