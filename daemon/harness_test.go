package daemon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// t0 is where every test's clock starts: a Saturday, in winter time in Paris.
var t0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeEngine stands in for the run engine behind Setup.Run: it records its
// calls, can hold a job until the test releases it (or its context is
// cancelled), and returns queued results.
type fakeEngine struct {
	clk     *fakeClock
	tag     string // tells setups apart in the calls
	started chan string

	mu      sync.Mutex
	calls   []string
	gates   map[string]chan struct{}
	results map[string][]connector.Run
	panics  map[string]string
	id      int64
	ctxErrs []string // jobs whose context was cancelled
}

func newEngine(clk *fakeClock, tag string) *fakeEngine {
	return &fakeEngine{clk: clk, tag: tag, started: make(chan string, 1000),
		gates: map[string]chan struct{}{}, results: map[string][]connector.Run{}, panics: map[string]string{}}
}

// hold makes the next runs of job wait until release.
func (e *fakeEngine) hold(job string) (release func()) {
	ch := make(chan struct{})
	e.mu.Lock()
	e.gates[job] = ch
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.gates, job)
		e.mu.Unlock()
		close(ch)
	}
}

// queue sets the results of the next runs of job.
func (e *fakeEngine) queue(job string, runs ...connector.Run) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.results[job] = append(e.results[job], runs...)
}

func (e *fakeEngine) Run(ctx context.Context, job string, full bool) (connector.Run, error) {
	now := e.clk.Now()
	e.mu.Lock()
	e.id++
	id := e.id
	call := now.Format("01-02 15:04") + " " + job
	if full {
		call += " full"
	}
	if e.tag != "" {
		call += " (" + e.tag + ")"
	}
	e.calls = append(e.calls, call)
	gate := e.gates[job]
	p := e.panics[job]
	r := connector.Run{Status: connector.StatusOK}
	if q := e.results[job]; len(q) > 0 {
		r, e.results[job] = q[0], q[1:]
	}
	e.mu.Unlock()
	e.started <- job
	if p != "" {
		panic(p)
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			e.mu.Lock()
			e.ctxErrs = append(e.ctxErrs, job)
			e.mu.Unlock()
			// What the engine does: the interrupted run is recorded failed.
			return connector.Run{ID: id, Job: job, Status: connector.StatusFailed,
				Reason: "interrupted: " + ctx.Err().Error()}, ctx.Err()
		}
	}
	r.ID, r.Job = id, job
	return r, nil
}

// sortedCalls returns the calls in time order, and by name within a minute
// since jobs due at once start concurrently.
func (e *fakeEngine) sortedCalls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := append([]string(nil), e.calls...)
	sort.Strings(out)
	return out
}

// sdRecorder records sd_notify states.
type sdRecorder struct {
	mu     sync.Mutex
	states []string
}

func (s *sdRecorder) notify(state string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states = append(s.states, state)
	return nil
}

func (s *sdRecorder) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, st := range s.states {
		if !strings.HasPrefix(st, "STATUS=") {
			out = append(out, st)
		}
	}
	return out
}

// harness runs a Daemon in the background against a fake clock.
type harness struct {
	t      *testing.T
	clk    *fakeClock
	d      *Daemon
	logs   *syncBuffer
	sd     *sdRecorder
	reload chan struct{}
	done   chan connector.Run
	cancel context.CancelFunc
	errc   chan error
	result *error
}

func startDaemon(t *testing.T, clk *fakeClock, load func() (*Setup, error), tweak ...func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, clk: clk, logs: &syncBuffer{}, sd: &sdRecorder{},
		reload: make(chan struct{}), done: make(chan connector.Run, 1000), errc: make(chan error, 1)}
	opts := Options{
		Load:   load,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:  h.clk,
		Reload: h.reload,
		Grace:  time.Minute,
		Notify: h.sd.notify,
	}
	for _, f := range tweak {
		f(&opts)
	}
	h.d = New(opts)
	h.d.afterRun = func(r connector.Run) { h.done <- r }
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.errc <- h.d.Run(ctx) }()
	h.clk.waitFor(t, "the scheduler to arm its first timer", func() bool { return h.clk.created() > 0 })
	t.Cleanup(func() {
		if h.result == nil {
			h.stop()
		}
	})
	return h
}

// step moves the clock to the scheduler's next wake-up and waits until it
// has dealt with it and armed its next timer.
func (h *harness) step() {
	h.t.Helper()
	made := h.clk.created()
	at, ok := h.clk.next()
	if !ok {
		h.t.Fatal("no timer pending")
	}
	h.clk.Set(at)
	h.clk.waitFor(h.t, "the scheduler to re-arm", func() bool { return h.clk.created() > made && h.clk.pending() > 0 })
}

// stepTo steps until the clock reaches at, waiting after each step for the
// runs it started to finish, so that none is skipped as still running.
func (h *harness) stepTo(at time.Time) {
	h.t.Helper()
	for h.clk.Now().Before(at) {
		before := h.launched()
		h.step()
		for range h.launched() - before {
			h.waitRun()
		}
	}
}

// advanceTo steps until the clock reaches at without waiting for runs.
func (h *harness) advanceTo(at time.Time) {
	h.t.Helper()
	for h.clk.Now().Before(at) {
		h.step()
	}
}

func (h *harness) launched() int {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	return h.d.started
}

// waitRun waits for one run to be fully accounted for (metrics, health,
// notification, bookkeeping).
func (h *harness) waitRun() connector.Run {
	h.t.Helper()
	select {
	case r := <-h.done:
		return r
	case <-time.After(20 * time.Second):
		h.t.Fatal("gave up waiting for a run to finish")
	}
	return connector.Run{}
}

// waitStarted waits for the engine to be called for jobs, in any order.
func (h *harness) waitStarted(e *fakeEngine, jobs ...string) {
	h.t.Helper()
	// The runs of one tick start on goroutines of their own, in any order.
	want := slices.Sorted(slices.Values(jobs))
	var got []string
	for range jobs {
		select {
		case job := <-e.started:
			got = append(got, job)
		case <-time.After(20 * time.Second):
			h.t.Fatalf("gave up waiting for %v to start (started: %v)", jobs, got)
		}
	}
	if slices.Sort(got); !slices.Equal(got, want) {
		h.t.Fatalf("engine called for %v, want %v", got, want)
	}
}

// sendReload delivers a SIGHUP and waits until the scheduler runs again.
func (h *harness) sendReload() {
	h.t.Helper()
	made := h.clk.created()
	h.reload <- struct{}{}
	h.clk.waitFor(h.t, "the reload to be handled", func() bool { return h.clk.created() > made && h.clk.pending() > 0 })
}

// stop cancels the daemon's context and returns what Run returned.
func (h *harness) stop() error {
	h.t.Helper()
	h.cancel()
	return h.wait()
}

func (h *harness) wait() error {
	h.t.Helper()
	select {
	case err := <-h.errc:
		h.result = &err
		return err
	case <-time.After(20 * time.Second):
		h.t.Fatal("Run did not return")
	}
	return nil
}

func setupOf(e *fakeEngine, jobs ...Job) *Setup {
	return &Setup{Jobs: jobs, Run: e.Run}
}

func loadOnce(s *Setup) func() (*Setup, error) {
	return func() (*Setup, error) { return s, nil }
}

func at(hhmm string) time.Time {
	var h, m int
	if _, err := fmt.Sscanf(hhmm, "%d:%d", &h, &m); err != nil {
		panic(err)
	}
	return t0.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}
