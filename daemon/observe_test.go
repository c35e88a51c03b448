package daemon

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/notify"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// scrape returns the lines of /metrics that start with prefix.
func scrape(t *testing.T, d *Daemon, prefix string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	var out []string
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, prefix) || strings.HasPrefix(l, "# HELP "+prefix) || strings.HasPrefix(l, "# TYPE "+prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func healthz(t *testing.T, d *Daemon) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	return rec.Code, rec.Body.String()
}

// TestMetrics runs jobs to ok, blocked and failed ends and compares every
// contactsync_ series with a golden file.
func TestMetrics(t *testing.T) {
	clk := newFakeClock(t0)
	e := newEngine(clk, "")
	e.queue("a",
		connector.Run{Status: connector.StatusOK, Counts: connector.Counts{Created: 3, Updated: 2, Deleted: 1, Unchanged: 10, Rejected: 1, Waiting: 1, Source: 17}},
		connector.Run{Status: connector.StatusBlocked, Counts: connector.Counts{Deleted: 15, Source: 2}, Reason: "safety: 15 deletes > max_delete_percent 10"},
		connector.Run{Status: connector.StatusFailed, Counts: connector.Counts{Created: 50}, Reason: "ldap: dial: connection refused"},
	)
	e.queue("b", connector.Run{Status: connector.StatusOK, Counts: connector.Counts{Created: 5, Source: 5}})
	h := startDaemon(t, clk, loadOnce(setupOf(e,
		Job{Name: "a", Schedule: "@every 10m"},
		Job{Name: "b", Schedule: "@every 30m"})))
	h.stepTo(at("00:30"))
	got := []byte(scrape(t, h.d, "contactsync_"))
	p := filepath.Join("testdata", "metrics.txt")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("metrics differ from %s:\n%s", p, got)
	}
	// One line per run, with its figures (debug: the engine logs its own).
	if logs := h.logs.String(); !strings.Contains(logs,
		`level=DEBUG msg="scheduled run done" job=a run=1 status=ok full=false created=3 updated=2 deleted=1 unchanged=10 rejected=1 waiting=1 source_records=17 took=0s`) {
		t.Errorf("run line missing:\n%s", logs)
	}
}

func TestHealthz(t *testing.T) {
	type check struct {
		at   string
		code int
		body string
	}
	failed := func(reason string) connector.Run {
		return connector.Run{Status: connector.StatusFailed, Reason: reason}
	}
	ok := connector.Run{Status: connector.StatusOK}
	tests := []struct {
		name     string
		failures int
		results  []connector.Run
		checks   []check
	}{
		{
			name:    "failures in a row",
			results: []connector.Run{failed("x"), failed("y"), failed("ldap:\n  timeout"), ok},
			checks: []check{
				{"00:00", 200, "ok\n"},
				{"00:20", 200, "ok\n"},
				{"00:30", 503, "job a: 3 runs in a row failed or were blocked; last failed: ldap: timeout\n"},
				{"00:40", 200, "ok\n"},
			},
		},
		{
			name:     "no success within twice the interval",
			failures: 10,
			results:  []connector.Run{failed("x"), failed("x"), ok, failed("x"), failed("x")},
			checks: []check{
				{"00:20", 200, "ok\n"},
				{"00:21", 503, "job a: no successful run since the daemon started at 2025-03-01T00:00:00Z (late since 2025-03-01T00:20:00Z)\n"},
				{"00:30", 200, "ok\n"},
				{"00:50", 200, "ok\n"},
				{"00:51", 503, "job a: no successful run since 2025-03-01T00:30:00Z (late since 2025-03-01T00:50:00Z)\n"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(t0)
			e := newEngine(clk, "")
			e.queue("a", tt.results...)
			s := setupOf(e, Job{Name: "a", Schedule: "@every 10m"})
			s.UnhealthyFailures = tt.failures
			h := startDaemon(t, clk, loadOnce(s))
			for _, c := range tt.checks {
				h.stepTo(at(c.at))
				code, body := healthz(t, h.d)
				if code != c.code || body != c.body {
					t.Errorf("at %s: /healthz = %d %q, want %d %q", c.at, code, body, c.code, c.body)
				}
			}
		})
	}
}

// hookSecret is part of the test webhook's URL: it must never be logged.
const hookSecret = "hook-token-s3cr3t"

type hook struct {
	notifier *notify.Notifier
	mu       sync.Mutex
	posts    []map[string]any
}

func newHook(t *testing.T) *hook {
	t.Helper()
	hk := &hook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		hk.mu.Lock()
		hk.posts = append(hk.posts, m)
		hk.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "webhook.url")
	if err := os.WriteFile(file, []byte(srv.URL+"/hooks/"+hookSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := notify.New(&notify.Config{Webhook: &notify.WebhookConfig{URLFile: file}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hk.notifier = n
	return hk
}

func (hk *hook) messages() []map[string]any {
	hk.mu.Lock()
	defer hk.mu.Unlock()
	return append([]map[string]any(nil), hk.posts...)
}
