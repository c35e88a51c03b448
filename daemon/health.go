package daemon

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/contactsync/contactsync/connector"
)

// DefaultUnhealthyFailures is how many failed or blocked runs in a row make
// /healthz answer 503 when Setup.UnhealthyFailures is 0.
const DefaultUnhealthyFailures = 3

// health follows what /healthz reports: per job, the failures in a row and
// whether it has succeeded recently enough for its schedule.
type health struct {
	mu       sync.Mutex
	jobs     map[string]*jobHealth
	failures int
}

type jobHealth struct {
	sched cron.Schedule
	// ref is the job's last success, or when this daemon first scheduled
	// it: a job is late when it has not succeeded for two intervals since.
	ref        time.Time
	succeeded  bool
	streak     int
	lastStatus string
	lastReason string
}

func newHealth() *health { return &health{jobs: map[string]*jobHealth{}} }

// set installs the jobs of a new setup. A job kept across a reload keeps
// its history; a new one starts its clock now.
func (h *health) set(jobs []*jobState, failures int, now time.Time) (added, removed []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if failures <= 0 {
		failures = DefaultUnhealthyFailures
	}
	h.failures = failures
	keep := map[string]bool{}
	for _, j := range jobs {
		keep[j.Name] = true
		if jh, ok := h.jobs[j.Name]; ok {
			jh.sched = j.sched
			continue
		}
		h.jobs[j.Name] = &jobHealth{sched: j.sched, ref: now}
		added = append(added, j.Name)
	}
	for name := range h.jobs {
		if !keep[name] {
			delete(h.jobs, name)
			removed = append(removed, name)
		}
	}
	return added, removed
}

// record notes a finished run and returns the job's failures in a row;
// known is false when a reload removed the job while it ran.
func (h *health) record(r connector.Run, finished time.Time) (streak int, known bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	jh, ok := h.jobs[r.Job]
	if !ok {
		return 0, false
	}
	jh.lastStatus, jh.lastReason = r.Status, r.Reason
	if r.Status == connector.StatusOK {
		jh.streak = 0
		jh.ref = finished
		jh.succeeded = true
	} else {
		jh.streak++
	}
	return jh.streak, true
}

// problems lists why the daemon is unhealthy at now, one line per job, in
// job order; none means healthy.
func (h *health) problems(now time.Time) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.jobs))
	for n := range h.jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []string
	for _, name := range names {
		jh := h.jobs[name]
		if jh.streak >= h.failures {
			out = append(out, fmt.Sprintf("job %s: %d runs in a row failed or were blocked; last %s: %s",
				name, jh.streak, jh.lastStatus, oneLine(jh.lastReason)))
			continue
		}
		if late := lateAfter(jh.sched, jh.ref); !late.IsZero() && now.After(late) {
			what := "no successful run since the daemon started at " + jh.ref.Format(time.RFC3339)
			if jh.succeeded {
				what = "no successful run since " + jh.ref.Format(time.RFC3339)
			}
			out = append(out, fmt.Sprintf("job %s: %s (late since %s)", name, what, late.Format(time.RFC3339)))
		}
	}
	return out
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		s = "(no reason recorded)"
	}
	return s
}

func (d *Daemon) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	ps := d.health.problems(d.clock.Now())
	if len(ps) == 0 {
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(strings.Join(ps, "\n") + "\n"))
}
