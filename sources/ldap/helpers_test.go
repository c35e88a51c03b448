package ldap

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sources/ldap/ldaptest"
)

// One slapd serves the whole package; tests that change the directory work
// in their own OU so that they do not disturb the others.
var (
	srv    *ldaptest.Slapd
	srvErr error
)

const (
	people = "ou=people,dc=example,dc=org"
	bulk   = "ou=bulk,dc=example,dc=org"
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "contactsync-ldap-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, srvErr = ldaptest.NewSlapd(dir, ldaptest.SlapdOptions{
		LDIF:       []string{"testdata/suppliers.ldif"},
		ExtraLDIF:  bulkLDIF("bulk", 1200),
		SessionLog: 10000,
	})
	code := m.Run()
	srv.Stop()
	stopBench()
	os.RemoveAll(dir)
	os.Exit(code)
}

func slapd(tb testing.TB) *ldaptest.Slapd {
	tb.Helper()
	ldaptest.Require(tb, srvErr)
	return srv
}

// bulkLDIF makes an OU of n people.
func bulkLDIF(ou string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: ou=%s,dc=example,dc=org\nobjectClass: organizationalUnit\nou: %s\n\n", ou, ou)
	for i := range n {
		fmt.Fprintf(&b, "dn: uid=p%06d,ou=%s,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: p%06d\ncn: Person %d\nsn: P%d\ngivenName: Given%d\ntelephoneNumber: +33 1 %08d\nmail: p%d@bulk.example\no: Bulk Supplies\n\n", i, ou, i, i, i, i, i, i)
	}
	return b.String()
}

// recorder is a connector.Emitter that keeps what it is given, copying each
// record because the source reuses its buffers.
type recorder struct {
	records map[string]map[string]string // key -> name -> value
	origins map[string]string
	deletes []string
	rejects []string // origin: reason
	order   []string
}

func newRecorder() *recorder {
	return &recorder{records: map[string]map[string]string{}, origins: map[string]string{}}
}

func (r *recorder) Record(rec *connector.Record) error {
	m := make(map[string]string, len(rec.Names))
	for i, n := range rec.Names {
		if n != strings.ToLower(n) {
			return fmt.Errorf("name %q is not lower-case", n)
		}
		m[n] = rec.Values[i]
	}
	r.records[rec.Key] = m
	r.origins[rec.Key] = rec.Origin
	r.order = append(r.order, rec.Key)
	return nil
}

func (r *recorder) Reject(key, origin, reason string) error {
	r.rejects = append(r.rejects, origin+": "+reason)
	return nil
}

func (r *recorder) Delete(key, origin string) error {
	r.deletes = append(r.deletes, key)
	return nil
}

// population is what a store would hold after applying a pull to prev.
func population(prev map[string]map[string]string, res connector.PullResult, r *recorder) map[string]map[string]string {
	out := map[string]map[string]string{}
	if !res.Complete {
		maps.Copy(out, prev)
		for _, k := range r.deletes {
			delete(out, k)
		}
	}
	maps.Copy(out, r.records)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// logBuffer collects the source's log so that tests can look for secrets
// and warnings in it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func writeSecret(t testing.TB, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ldap.password")
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readerConfig reads the people OU as the read-only service account, over
// StartTLS with the server's CA.
func readerConfig(t testing.TB, s *ldaptest.Slapd, base string) Config {
	return Config{
		URL:              s.URL,
		StartTLS:         true,
		CAFile:           s.PKI.CAFile,
		BindDN:           s.ReaderDN,
		BindPasswordFile: writeSecret(t, s.ReaderPass),
		BaseDN:           base,
		Filter:           "(objectClass=inetOrgPerson)",
	}
}

func open(t testing.TB, cfg Config) (*Source, *logBuffer) {
	t.Helper()
	v := connector.NewValidator(t.TempDir())
	cfg.Validate(v)
	if err := v.Err(); err != nil {
		t.Fatalf("config: %v", err)
	}
	lb := &logBuffer{}
	src, err := cfg.Open(connector.Env{Job: "test", Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	return src.(*Source), lb
}

func doPull(t testing.TB, src *Source, req connector.PullRequest) (connector.PullResult, *recorder) {
	t.Helper()
	r := newRecorder()
	res, err := src.Pull(context.Background(), req, r)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	return res, r
}

var mapped = []string{"cn", "sn", "givenname", "telephonenumber", "mail", "o", "mobile"}
