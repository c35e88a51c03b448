package ldap

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
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

// countEmitter counts records, as cheaply as an emitter can, and samples
// the live heap (as of the last GC) to show that memory does not grow with
// the number of entries.
type countEmitter struct {
	n    int
	peak uint64
	s    []metrics.Sample
}

func (c *countEmitter) Record(*connector.Record) error {
	c.n++
	if c.n%500 == 0 {
		metrics.Read(c.s)
		c.peak = max(c.peak, c.s[0].Value.Uint64())
	}
	return nil
}

func (c *countEmitter) Reject(_, _, _ string) error { return nil }
func (c *countEmitter) Delete(_, _ string) error    { return nil }

// BenchmarkPull reads 1,200 entries (the tests' server) and 20,000 (a
// server of its own) with full paged pulls; live-heap-MB staying the same
// for both is the point.
func BenchmarkPull(b *testing.B) {
	for _, bb := range []struct {
		entries int
		base    string
		srv     func(b *testing.B) *ldaptest.Slapd
	}{
		{1200, bulk, func(b *testing.B) *ldaptest.Slapd { return slapd(b) }},
		{benchEntries, "ou=bench,dc=example,dc=org", func(b *testing.B) *ldaptest.Slapd {
			benchOnce.Do(func() {
				benchDir, benchErr = os.MkdirTemp("", "contactsync-ldap-bench-")
				if benchErr == nil {
					benchSrv, benchErr = ldaptest.NewSlapd(benchDir, ldaptest.SlapdOptions{ExtraLDIF: bulkLDIF("bench", benchEntries)})
				}
			})
			ldaptest.Require(b, benchErr)
			return benchSrv
		}},
	} {
		b.Run(fmt.Sprintf("entries=%d", bb.entries), func(b *testing.B) {
			src, _ := open(b, readerConfig(b, bb.srv(b), bb.base))
			req := connector.PullRequest{Attributes: mapped, Full: true}
			var peak uint64
			runtime.GC() // so that the setup's garbage is not counted as live
			b.ReportAllocs()
			for b.Loop() {
				c := countEmitter{s: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
				if _, err := src.Pull(context.Background(), req, &c); err != nil {
					b.Fatal(err)
				}
				if c.n != bb.entries {
					b.Fatalf("%d records, want %d", c.n, bb.entries)
				}
				peak = max(peak, c.peak)
			}
			b.ReportMetric(float64(bb.entries)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(peak)/(1<<20), "live-heap-MB")
		})
	}
}
