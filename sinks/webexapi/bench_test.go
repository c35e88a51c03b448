package webexapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sinks/webexapi/simulator"
)

// BenchmarkCreate100k creates 100,000 contacts against the simulator with
// no latency: the sink's own cost (bodies, journal calls, outcomes) plus the
// simulator's.
func BenchmarkCreate100k(b *testing.B) {
	const n = 100_000
	plan := make([]connector.Change, n)
	for i := range plan {
		plan[i] = create(fmt.Sprint("k", i), person(fmt.Sprint("Supplier ", i), fmt.Sprintf("+33140%06d", i), fmt.Sprintf("s%d@example.com", i)))
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		e := newEnv(b, setup{cfg: func(c *Config) { c.RequestsPerSecond = 1e6 }})
		b.StartTimer()
		out, err := e.apply(context.Background(), &memJournal{}, plan...)
		if err != nil || len(out.bound) != n {
			b.Fatalf("err %v, bound %d", err, len(out.bound))
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "contacts/s")
}

// BenchmarkRate measures the call rate against a simulator with latency:
// it must reach requests_per_second (or concurrency/latency, whichever is
// lower) and never exceed it. Reported: calls/s over the run, the most calls
// started in any one-second window, and the most calls in flight.
func BenchmarkRate(b *testing.B) {
	for _, tc := range []struct {
		name        string
		rps         float64
		concurrency int
		latency     time.Duration
		calls       int
	}{
		{"rate-bound rps=20 conc=4 latency=100ms", 20, 4, 100 * time.Millisecond, 60},
		{"concurrency-bound rps=100 conc=4 latency=200ms", 100, 4, 200 * time.Millisecond, 60},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				sim := simulator.New(simulator.Options{OrgID: testOrg, Token: testToken, Latency: tc.latency})
				var mu sync.Mutex
				var starts []time.Time
				inflight, maxInflight := 0, 0
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					starts = append(starts, time.Now())
					inflight++
					maxInflight = max(maxInflight, inflight)
					mu.Unlock()
					sim.ServeHTTP(w, r)
					mu.Lock()
					inflight--
					mu.Unlock()
				}))
				dir := b.TempDir()
				write(b, dir+"/t", testToken)
				cfg := &Config{BaseURL: srv.URL + "/v1", OrgID: testOrg, TokenFile: dir + "/t", BatchSize: 1,
					RequestsPerSecond: tc.rps, Concurrency: tc.concurrency}
				s, err := newSink(cfg, connector.Env{Job: "bench"}, srv.Client())
				if err != nil {
					b.Fatal(err)
				}
				plan := make(memPlan, tc.calls)
				for i := range plan {
					plan[i] = create(fmt.Sprint("k", i), person(fmt.Sprint("S", i), fmt.Sprint("+3314000", i), ""))
				}
				out := &memOut{bound: map[string]string{}, failed: map[string]string{}}
				t0 := time.Now()
				if _, err := s.Apply(context.Background(), connector.RunInfo{Job: "bench", RunID: 1, Journal: &memJournal{}}, plan, out); err != nil {
					b.Fatal(err)
				}
				took := time.Since(t0)
				srv.Close()
				sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
				window := 0
				for i := range starts {
					j := sort.Search(len(starts), func(k int) bool { return starts[k].Sub(starts[i]) >= time.Second })
					window = max(window, j-i)
				}
				b.ReportMetric(float64(len(starts))/took.Seconds(), "calls/s")
				b.ReportMetric(float64(window), "max-calls-in-1s")
				b.ReportMetric(float64(maxInflight), "max-in-flight")
			}
		})
	}
}
