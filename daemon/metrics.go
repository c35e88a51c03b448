package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/contactsync/contactsync/connector"
)

// statuses are the values of contactsync_last_run_status's status label;
// exactly one of them is 1 per job once it has run.
var statuses = []string{connector.StatusOK, connector.StatusFailed, connector.StatusBlocked}

// metrics live on the daemon's own registry, not the global one, so that
// several daemons can run in one test binary and nothing registered by a
// library leaks into the scrape.
type metrics struct {
	reg         *prometheus.Registry
	lastRun     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	lastStatus  *prometheus.GaugeVec
	runs        *prometheus.CounterVec
	blocked     *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	contacts    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	managed     *prometheus.GaugeVec
	source      *prometheus.GaugeVec
	running     *prometheus.GaugeVec
	failStreak  *prometheus.GaugeVec
	reloads     *prometheus.CounterVec
}

func newMetrics() *metrics {
	const ns = "contactsync"
	job := []string{"job"}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "last_run_timestamp_seconds",
			Help: "When the job's last run finished (Unix time)."}, job),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "last_success_timestamp_seconds",
			Help: "When the job's last successful run finished (Unix time)."}, job),
		lastStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "last_run_status",
			Help: "1 for the status of the job's last run (ok, failed, blocked), 0 for the others."}, []string{"job", "status"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "runs_total",
			Help: "Scheduled runs by final status."}, []string{"job", "status"}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "blocked_runs_total",
			Help: "Runs stopped by a safety guard; an operator must look (approve)."}, job),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "skipped_runs_total",
			Help: "Scheduled runs skipped because the job's previous run was still going."}, job),
		contacts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "contacts_total",
			Help: "Contacts created, updated, deleted, adopted by successful runs, and source records rejected."}, []string{"job", "action"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "run_duration_seconds",
			Help:    "How long runs took.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200}}, job),
		managed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "managed_contacts",
			Help: "Contacts the job manages after its last successful run."}, job),
		source: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "source_records",
			Help: "Records the source handed over in the job's last complete pull."}, job),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "job_running",
			Help: "1 while a run of the job is under way."}, job),
		failStreak: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "consecutive_failures",
			Help: "Failed or blocked runs in a row since the job's last success."}, job),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "config_reloads_total",
			Help: "Configuration reloads (SIGHUP) by result: ok, refused."}, []string{"result"}),
	}
	m.reg.MustRegister(m.lastRun, m.lastSuccess, m.lastStatus, m.runs, m.blocked, m.skipped, m.contacts,
		m.duration, m.managed, m.source, m.running, m.failStreak, m.reloads,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("refused")
	return m
}

// addJob makes a job's series appear at 0 before its first run, so that an
// alert on rate() or absence works from the start.
func (m *metrics) addJob(job string) {
	for _, s := range statuses {
		m.runs.WithLabelValues(job, s)
	}
	for _, a := range []string{"created", "updated", "deleted", "rejected", "adopted"} {
		m.contacts.WithLabelValues(job, a)
	}
	m.blocked.WithLabelValues(job)
	m.skipped.WithLabelValues(job)
	m.running.WithLabelValues(job)
	m.failStreak.WithLabelValues(job)
}

// removeJob drops the series of a job that a reload took away.
func (m *metrics) removeJob(job string) {
	l := prometheus.Labels{"job": job}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.lastRun, m.lastSuccess, m.lastStatus, m.runs, m.blocked, m.skipped, m.contacts,
		m.duration, m.managed, m.source, m.running, m.failStreak,
	} {
		v.DeletePartialMatch(l)
	}
}

func (m *metrics) record(r connector.Run, took time.Duration, finished time.Time, streak int) {
	job := r.Job
	m.lastRun.WithLabelValues(job).Set(float64(finished.UnixNano()) / 1e9)
	for _, s := range statuses {
		v := 0.0
		if s == r.Status {
			v = 1
		}
		m.lastStatus.WithLabelValues(job, s).Set(v)
	}
	m.runs.WithLabelValues(job, r.Status).Inc()
	m.duration.WithLabelValues(job).Observe(took.Seconds())
	m.failStreak.WithLabelValues(job).Set(float64(streak))
	switch r.Status {
	case connector.StatusOK:
		m.lastSuccess.WithLabelValues(job).Set(float64(finished.UnixNano()) / 1e9)
		// Only a successful run commits its changes: the figures of a
		// failed run say what was planned, not what happened.
		m.contacts.WithLabelValues(job, "created").Add(float64(r.Created))
		m.contacts.WithLabelValues(job, "updated").Add(float64(r.Updated))
		m.contacts.WithLabelValues(job, "deleted").Add(float64(r.Deleted))
		m.contacts.WithLabelValues(job, "rejected").Add(float64(r.Rejected))
		m.contacts.WithLabelValues(job, "adopted").Add(float64(r.Adopted))
		// A run that found no new drop file pulls nothing and changes
		// nothing: keep the figures of the last run that read something.
		if r.Counts.Source > 0 {
			m.managed.WithLabelValues(job).Set(float64(managed(r.Counts)))
			m.source.WithLabelValues(job).Set(float64(r.Counts.Source))
		}
	case connector.StatusBlocked:
		m.blocked.WithLabelValues(job).Inc()
		// A blocked run pulled everything: its source figure is what the
		// guard judged, and the reason an operator looks at the graph.
		m.source.WithLabelValues(job).Set(float64(r.Counts.Source))
	}
}

// managed estimates the contacts a job manages after a successful run from
// its figures: what it created, updated, adopted, left unchanged or holds
// back. Counts has no exact figure for it.
func managed(c connector.Counts) int {
	return c.Created + c.Updated + c.Adopted + c.Unchanged + c.Waiting
}
