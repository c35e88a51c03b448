package daemon

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

func TestScheduleFiresInOrder(t *testing.T) {
	tests := []struct {
		name  string
		jobs  []Job
		until time.Time
		want  []string
	}{
		{
			name: "every, cron and CRON_TZ",
			jobs: []Job{
				{Name: "a", Schedule: "@every 20m"},
				{Name: "b", Schedule: "*/30 * * * *"},
				// 01:30 in Paris is 00:30 UTC in March (CET).
				{Name: "c", Schedule: "CRON_TZ=Europe/Paris 30 1 * * *"},
			},
			until: at("01:00"),
			want: []string{
				"03-01 00:20 a", "03-01 00:30 b", "03-01 00:30 c", "03-01 00:40 a",
				"03-01 01:00 a", "03-01 01:00 b",
			},
		},
		{
			name: "full schedule",
			jobs: []Job{
				// At 01:00 both schedules fall: one run, a full one.
				{Name: "a", Schedule: "*/30 * * * *", FullSchedule: "0 * * * *"},
				{Name: "b", Schedule: "@hourly", FullSchedule: "@daily"},
			},
			until: at("26:00"),
			want: func() []string {
				var w []string
				for h := 0; h <= 26; h++ {
					day, hh := "03-01", h
					if h >= 24 {
						day, hh = "03-02", h-24
					}
					stamp := day + " " + twoDigits(hh)
					if h > 0 {
						w = append(w, stamp+":00 a full")
						b := stamp + ":00 b"
						if h == 24 {
							b += " full"
						}
						w = append(w, b)
					}
					if h < 26 {
						w = append(w, stamp+":30 a")
					}
				}
				return w
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(t0)
			e := newEngine(clk, "")
			h := startDaemon(t, clk, loadOnce(setupOf(e, tt.jobs...)))
			h.stepTo(tt.until)
			if got := e.sortedCalls(); !slices.Equal(got, tt.want) {
				t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func twoDigits(n int) string { return string([]byte{byte('0' + n/10), byte('0' + n%10)}) }

// TestOverlap: a job still running when its time comes again is skipped
// (and a full pull it owed is made by its next run), while another job runs
// alongside it.
func TestOverlap(t *testing.T) {
	clk := newFakeClock(t0)
	e := newEngine(clk, "")
	h := startDaemon(t, clk, loadOnce(setupOf(e,
		Job{Name: "slow", Schedule: "@every 10m", FullSchedule: "20 * * * *"},
		Job{Name: "fast", Schedule: "@every 10m"})))
	release := e.hold("slow")
	h.advanceTo(at("00:10"))
	// Both start at 00:10 (the clock must not move before slow has), and
	// slow is held.
	h.waitStarted(e, "fast", "slow")
	h.waitRun() // fast at 00:10
	h.advanceTo(at("00:20"))
	h.waitRun() // fast at 00:20; slow skipped, full owed
	release()
	if r := h.waitRun(); r.Job != "slow" {
		t.Fatalf("finished %s, want slow", r.Job)
	}
	h.stepTo(at("00:30"))
	want := []string{"03-01 00:10 fast", "03-01 00:10 slow", "03-01 00:20 fast", "03-01 00:30 fast", "03-01 00:30 slow full"}
	if got := e.sortedCalls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(h.logs.String(), `msg="run skipped: the previous run of the job is still going" job=slow full=true`) {
		t.Errorf("the skip was not logged:\n%s", h.logs.String())
	}
	if got := scrape(t, h.d, "contactsync_skipped_runs_total"); !strings.Contains(got, `contactsync_skipped_runs_total{job="slow"} 1`) {
		t.Errorf("skipped_runs_total:\n%s", got)
	}
}

// TestMissedRunsNotReplayed: nothing runs at start for the time the daemon
// was down, and a wake-up hours late (a paused VM) runs each job once.
func TestMissedRunsNotReplayed(t *testing.T) {
	clk := newFakeClock(t0)
	e := newEngine(clk, "")
	h := startDaemon(t, clk, loadOnce(setupOf(e,
		Job{Name: "often", Schedule: "@every 10m"},
		Job{Name: "nightly", Schedule: "0 2 * * *"})))
	if got := e.sortedCalls(); len(got) != 0 {
		t.Fatalf("runs at start: %v", got)
	}
	// The scheduler's timer fires five hours late.
	made := h.clk.created()
	h.clk.Set(at("05:00"))
	h.clk.waitFor(t, "re-arm", func() bool { return h.clk.created() > made && h.clk.pending() > 0 })
	h.waitRun()
	h.waitRun()
	h.stepTo(at("05:10"))
	want := []string{"03-01 05:00 nightly", "03-01 05:00 often", "03-01 05:10 often"}
	if got := e.sortedCalls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPanicRecovered: a panicking run is a failed run, logged, counted and
// notified, and the job runs again next time.
func TestPanicRecovered(t *testing.T) {
	clk := newFakeClock(t0)
	e := newEngine(clk, "")
	e.panics["a"] = "boom"
	hook := newHook(t)
	s := setupOf(e, Job{Name: "a", Schedule: "@every 10m"})
	s.Notifier = hook.notifier
	h := startDaemon(t, clk, loadOnce(s))
	h.stepTo(at("00:10"))
	e.mu.Lock()
	delete(e.panics, "a")
	e.mu.Unlock()
	h.stepTo(at("00:20"))
	if got := e.sortedCalls(); !slices.Equal(got, []string{"03-01 00:10 a", "03-01 00:20 a"}) {
		t.Errorf("calls: %v", got)
	}
	logs := h.logs.String()
	for _, want := range []string{`msg="run panicked" job=a panic=boom`, `level=ERROR msg="scheduled run done" job=a run=0 status=failed`, `reason="panic: boom"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	metrics := scrape(t, h.d, "contactsync_runs_total")
	for _, want := range []string{`contactsync_runs_total{job="a",status="failed"} 1`, `contactsync_runs_total{job="a",status="ok"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	posts := hook.messages()
	if len(posts) != 1 || posts[0]["status"] != "failed" || posts[0]["reason"] != "panic: boom" {
		t.Errorf("notifications: %v", posts)
	}
	if strings.Contains(logs, hookSecret) {
		t.Errorf("the webhook URL's token is in the logs")
	}
}

// TestReload: a bad configuration is refused and the running one goes on; a
// good one takes over while the old setup's running job finishes on it, and
// the old setup is closed after that job.
func TestReload(t *testing.T) {
	clk := newFakeClock(t0)
	old, nu := newEngine(clk, "old"), newEngine(clk, "new")
	var oldClosed, badClosed, newClosed atomic.Int32
	first := setupOf(old, Job{Name: "a", Schedule: "@every 10m"})
	first.Close = func() error { oldClosed.Add(1); return nil }
	bad := setupOf(nu, Job{Name: "a", Schedule: "every ten minutes"})
	bad.Close = func() error { badClosed.Add(1); return nil }
	good := setupOf(nu, Job{Name: "a", Schedule: "@every 5m"}, Job{Name: "b", Schedule: "@every 7m"})
	good.Close = func() error { newClosed.Add(1); return nil }
	loads := []func() (*Setup, error){
		loadOnce(first),
		func() (*Setup, error) { return nil, errors.New("config: jobs[0].sink: exactly one of csv, webex") },
		loadOnce(bad),
		loadOnce(good),
	}
	var n int
	h := startDaemon(t, clk, func() (*Setup, error) { n++; return loads[n-1]() })
	release := old.hold("a")
	h.advanceTo(at("00:10"))
	h.waitStarted(old, "a")

	h.sendReload() // Load fails
	h.sendReload() // schedule does not parse
	if got := badClosed.Load(); got != 1 {
		t.Errorf("refused setup closed %d times, want 1", got)
	}
	logs := h.logs.String()
	for _, want := range []string{
		`configuration refused; the running configuration stays in use" err="config: jobs[0].sink: exactly one of csv, webex"`,
		`err="jobs[0] (a): schedule \"every ten minutes\": expected exactly 5 fields, found 3: [every ten minutes]"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}

	h.sendReload() // good: a every 5m, b every 7m, from 00:10
	if oldClosed.Load() != 0 {
		t.Fatal("old setup closed while its job runs")
	}
	h.advanceTo(at("00:15")) // a is due on the new setup but still runs on the old one
	h.stepTo(at("00:17"))    // b runs on the new setup
	release()
	h.waitRun()
	if got := oldClosed.Load(); got != 1 {
		t.Fatalf("old setup closed %d times after its job, want 1", got)
	}
	h.stepTo(at("00:20"))

	want := []string{"03-01 00:10 a (old)"}
	if got := old.sortedCalls(); !slices.Equal(got, want) {
		t.Errorf("old setup calls: %v, want %v", got, want)
	}
	want = []string{"03-01 00:17 b (new)", "03-01 00:20 a (new)"}
	if got := nu.sortedCalls(); !slices.Equal(got, want) {
		t.Errorf("new setup calls: %v, want %v", got, want)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if newClosed.Load() != 1 || oldClosed.Load() != 1 {
		t.Errorf("closes: old %d, new %d; want 1 each", oldClosed.Load(), newClosed.Load())
	}
	wantSD := []string{"READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"}
	if got := h.sd.get(); !slices.Equal(got, wantSD) {
		t.Errorf("sd_notify: %v, want %v", got, wantSD)
	}
	m := scrape(t, h.d, "contactsync_config_reloads_total")
	for _, w := range []string{`contactsync_config_reloads_total{result="ok"} 1`, `contactsync_config_reloads_total{result="refused"} 2`} {
		if !strings.Contains(m, w) {
			t.Errorf("metrics lack %q:\n%s", w, m)
		}
	}
}

// TestShutdown: on cancel, a run that finishes within the grace period ends
// normally; one that does not is interrupted through its context, recorded
// failed, and Run returns in both cases.
func TestShutdown(t *testing.T) {
	tests := []struct {
		name        string
		finishAlone bool
		wantStatus  string
	}{
		{"finishes within grace", true, connector.StatusOK},
		{"interrupted after grace", false, connector.StatusFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(t0)
			e := newEngine(clk, "")
			var closed atomic.Int32
			s := setupOf(e, Job{Name: "a", Schedule: "@every 10m"})
			s.Close = func() error { closed.Add(1); return nil }
			h := startDaemon(t, clk, loadOnce(s), func(o *Options) { o.Grace = 45 * time.Second })
			release := e.hold("a")
			h.advanceTo(at("00:10"))
			h.waitStarted(e, "a")

			made := h.clk.created()
			h.cancel()
			h.clk.waitFor(t, "the grace timer", func() bool { return h.clk.created() > made && h.clk.pending() == 1 })
			if at, _ := h.clk.next(); at != h.clk.Now().Add(45*time.Second) {
				t.Fatalf("grace timer at %v", at)
			}
			if closed.Load() != 0 {
				t.Fatal("setup closed while a job runs")
			}
			if tt.finishAlone {
				release()
			} else {
				h.clk.Advance(45 * time.Second)
			}
			r := h.waitRun()
			if err := h.wait(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if r.Status != tt.wantStatus {
				t.Errorf("run status %s, want %s", r.Status, tt.wantStatus)
			}
			if closed.Load() != 1 {
				t.Errorf("setup closed %d times, want 1", closed.Load())
			}
			e.mu.Lock()
			interrupted := len(e.ctxErrs) > 0
			e.mu.Unlock()
			if interrupted == tt.finishAlone {
				t.Errorf("run context cancelled: %v", interrupted)
			}
			if got := h.sd.get(); !slices.Equal(got, []string{"READY=1", "STOPPING=1"}) {
				t.Errorf("sd_notify: %v", got)
			}
		})
	}
}

func TestWatchdog(t *testing.T) {
	clk := newFakeClock(t0)
	e := newEngine(clk, "")
	h := startDaemon(t, clk, loadOnce(setupOf(e, Job{Name: "a", Schedule: "@daily"})),
		func(o *Options) { o.Watchdog = 15 * time.Second })
	for range 4 {
		h.step()
	}
	if got := h.clk.Now(); got != t0.Add(60*time.Second) {
		t.Errorf("after 4 wake-ups the clock is at %v", got)
	}
	if got := h.sd.get(); !slices.Equal(got, []string{"READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"}) {
		t.Errorf("sd_notify: %v", got)
	}
}

func TestStartErrors(t *testing.T) {
	e := newEngine(nil, "")
	tests := []struct {
		name  string
		load  func() (*Setup, error)
		want  string
		close bool
	}{
		{"load fails", func() (*Setup, error) { return nil, errors.New("config: bad") }, "daemon: load configuration: config: bad", false},
		{"bad schedule", loadOnce(setupOf(e, Job{Name: "a", Schedule: "0 2 * *"})),
			`daemon: jobs[0] (a): schedule "0 2 * *": expected exactly 5 fields, found 4: [0 2 * *]`, true},
		{"duplicate job", loadOnce(setupOf(e, Job{Name: "a", Schedule: "@daily"}, Job{Name: "a", Schedule: "@daily"})),
			`daemon: jobs[1]: job "a" twice`, true},
		{"bad listen", loadOnce(&Setup{Run: e.Run, Listen: "127.0.0.1:notaport"}), "daemon: listen 127.0.0.1:notaport", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			closed := false
			load := func() (*Setup, error) {
				s, err := tt.load()
				if s != nil {
					s.Close = func() error { closed = true; return nil }
				}
				return s, err
			}
			err := Run(t.Context(), Options{Load: load, Clock: newFakeClock(t0)})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Run error = %v, want %q", err, tt.want)
			}
			if closed != tt.close {
				t.Errorf("setup closed: %v, want %v", closed, tt.close)
			}
		})
	}
}
