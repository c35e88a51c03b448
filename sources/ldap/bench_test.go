package ldap

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sources/ldap/ldaptest"
)

const benchEntries = 20000

// The benchmark's server is started once, lazily (the benchmark function
// runs several times), and stopped by TestMain.
var (
	benchOnce sync.Once
	benchSrv  *ldaptest.Slapd
	benchErr  error
	benchDir  string
)

func stopBench() {
	benchSrv.Stop()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
}

// countEmitter counts records, as cheaply as an emitter can.
type countEmitter struct{ n int }

func (c *countEmitter) Record(*connector.Record) error { c.n++; return nil }
func (c *countEmitter) Reject(_, _, _ string) error    { return nil }
func (c *countEmitter) Delete(_, _ string) error       { return nil }

func BenchmarkPull(b *testing.B) {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "contactsync-ldap-bench-")
		if benchErr == nil {
			benchSrv, benchErr = ldaptest.NewSlapd(benchDir, ldaptest.SlapdOptions{ExtraLDIF: bulkLDIF("bench", benchEntries)})
		}
	})
	ldaptest.Require(b, benchErr)
	cfg := readerConfig(b, benchSrv, "ou=bench,dc=example,dc=org")
	src, _ := open(b, cfg)
	req := connector.PullRequest{Attributes: mapped, Full: true}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var c countEmitter
		if _, err := src.Pull(context.Background(), req, &c); err != nil {
			b.Fatal(err)
		}
		if c.n != benchEntries {
			b.Fatalf("%d records, want %d", c.n, benchEntries)
		}
	}
	b.ReportMetric(float64(benchEntries)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
