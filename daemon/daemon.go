// Package daemon is `contactsync run`: it schedules every job on its cron
// expression, never runs one job twice at once, reloads its configuration
// on demand, drains running jobs on shutdown within a grace period, tells
// systemd where it stands (READY, RELOADING, STOPPING, WATCHDOG), serves
// Prometheus metrics and a health check, and sends notifications.
//
// The package never reads signals itself: the command maps SIGHUP to
// Options.Reload and SIGTERM/SIGINT to cancelling the context, so the whole
// daemon runs inside tests, with a fake Clock instead of sleeping.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/robfig/cron/v3"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/notify"
)

// Job is one scheduled job.
type Job struct {
	Name string
	// Schedule is a robfig/cron spec: 5 fields, a descriptor (@daily,
	// @every 15m), optionally prefixed with CRON_TZ=Europe/Paris.
	Schedule string
	// FullSchedule is optional: when its time comes the run is a full pull.
	FullSchedule string
}

// Setup is what one configuration yields. Options.Load makes one at start
// and on every reload.
type Setup struct {
	Jobs []Job
	// Run runs one job once and returns the recorded run (Status ok, failed
	// or blocked, figures in Counts). It must honour ctx: the daemon cancels
	// it when the shutdown grace period is over.
	Run func(ctx context.Context, job string, full bool) (connector.Run, error)
	// Listen is the address of /metrics and /healthz; "" serves nothing.
	Listen string
	// Notifier may be nil.
	Notifier *notify.Notifier
	// UnhealthyFailures is how many failed or blocked runs in a row make a
	// job unhealthy; 0 means DefaultUnhealthyFailures.
	UnhealthyFailures int
	// Close releases what Load opened (the state store); may be nil. It is
	// called once the setup's last running job has finished.
	Close func() error
}

// Options configure the daemon.
type Options struct {
	Load   func() (*Setup, error)
	Logger *slog.Logger
	// Clock is nil for real time; tests pass a fake one.
	Clock Clock
	// Reload receives a value for every SIGHUP.
	Reload <-chan struct{}
	// Grace is how long running jobs may take to finish once the context
	// is cancelled, before their own context is cancelled; 0 means
	// DefaultGrace.
	Grace time.Duration
	// Notify talks to systemd (Systemd); nil sends nothing.
	Notify NotifySystemd
	// Watchdog is how often to send WATCHDOG=1. 0 with Notify set means
	// SystemdWatchdog(): half the unit's WatchdogSec=, or never outside
	// systemd; a negative value turns the pings off.
	Watchdog time.Duration
}

// DefaultGrace is the shutdown grace period when Options.Grace is 0. The
// unit's TimeoutStopSec= leaves room for it.
const DefaultGrace = 60 * time.Second

const (
	// maxSleep bounds every wait of the scheduler so that it looks at the
	// wall clock again at least once a minute: timers run on the monotonic
	// clock, which stands still while a VM is paused and ignores clock
	// corrections.
	maxSleep = time.Minute
	// abandonAfter bounds the wait for jobs after their context was
	// cancelled: a run that ignores its context must not keep the daemon
	// from exiting (systemd would kill it anyway).
	abandonAfter = 30 * time.Second
	// notifyTimeout bounds the notifications of one run, retries included.
	notifyTimeout = 30 * time.Second
)

// Daemon is one `contactsync run`.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	clock   Clock
	metrics *metrics
	health  *health
	handler http.Handler

	mu      sync.Mutex
	running map[string]bool // job names with a run under way, across setups
	started int             // runs launched since Run began
	wg      sync.WaitGroup

	// afterRun is called at the very end of every run's goroutine; tests
	// use it to know a run is fully accounted for.
	afterRun func(connector.Run)
}

// live is a loaded setup with its schedules.
type live struct {
	setup   *Setup
	jobs    []*jobState
	active  int  // runs under way; guarded by Daemon.mu
	retired bool // replaced by a reload or stopped
	closed  bool
}

type jobState struct {
	Job
	sched, full    cron.Schedule
	next, nextFull time.Time
	// fullPending keeps a full pull that fell while the job was running,
	// so that the next run makes it.
	fullPending bool
}

// New makes a daemon; Run starts it.
func New(opts Options) *Daemon {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Watchdog == 0 && opts.Notify != nil {
		// A unit with WatchdogSec= kills a service that never pings: do
		// not leave that to every caller.
		opts.Watchdog = SystemdWatchdog()
	}
	d := &Daemon{
		opts:    opts,
		log:     opts.Logger,
		clock:   opts.Clock,
		metrics: newMetrics(),
		health:  newHealth(),
		running: map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", d.serveHealth)
	d.handler = mux
	return d
}

// Run is New(opts).Run(ctx).
func Run(ctx context.Context, opts Options) error { return New(opts).Run(ctx) }

// Handler serves /metrics and /healthz; Run serves it on Setup.Listen.
func (d *Daemon) Handler() http.Handler { return d.handler }

// Run loads the configuration, schedules its jobs and blocks until ctx is
// cancelled; then it stops scheduling, waits up to the grace period for
// running jobs, cancels them, and returns. It fails at once when the first
// configuration cannot be loaded or its listen address cannot be bound.
func (d *Daemon) Run(ctx context.Context) error {
	if d.opts.Load == nil {
		return errors.New("daemon: no Load function")
	}
	setup, err := d.opts.Load()
	if err != nil {
		return fmt.Errorf("daemon: load configuration: %w", err)
	}
	now := d.clock.Now()
	cur, err := prepare(setup, now)
	if err != nil {
		d.closeSetup(setup)
		return fmt.Errorf("daemon: %w", err)
	}
	srv, err := d.serve(setup.Listen)
	if err != nil {
		d.closeSetup(setup)
		return err
	}
	d.install(cur, now)

	// Runs get a context of their own so that the grace period, not the
	// signal, decides when they are interrupted.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()

	d.sdnotify("READY=1")
	d.status(cur)
	d.log.Info("daemon started", "jobs", jobNames(cur), "listen", setup.Listen)

	var nextPing time.Time
	if d.opts.Watchdog > 0 {
		d.sdnotify("WATCHDOG=1")
		nextPing = now.Add(d.opts.Watchdog)
	}
	for {
		now = d.clock.Now()
		wake := now.Add(maxSleep)
		if !nextPing.IsZero() && nextPing.Before(wake) {
			wake = nextPing
		}
		for _, j := range cur.jobs {
			if j.next.Before(wake) {
				wake = j.next
			}
			if j.full != nil && j.nextFull.Before(wake) {
				wake = j.nextFull
			}
		}
		t := d.clock.NewTimer(max(wake.Sub(now), 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return d.shutdown(cur, srv, cancelRuns)
		case <-d.opts.Reload:
			t.Stop()
			cur, srv = d.reload(cur, srv)
		case <-t.C():
			now = d.clock.Now()
			if !nextPing.IsZero() && !now.Before(nextPing) {
				d.sdnotify("WATCHDOG=1")
				nextPing = now.Add(d.opts.Watchdog)
			}
			d.fire(runCtx, cur, now)
		}
	}
}

// prepare checks a setup and computes its first firing times from now: a
// run missed while the daemon was down is not made up for.
func prepare(s *Setup, now time.Time) (*live, error) {
	if s == nil {
		return nil, errors.New("configuration yields no setup")
	}
	if s.Run == nil {
		return nil, errors.New("setup has no Run function")
	}
	l := &live{setup: s}
	seen := map[string]bool{}
	var errs []error
	for i, j := range s.Jobs {
		if j.Name == "" {
			errs = append(errs, fmt.Errorf("jobs[%d]: no name", i))
			continue
		}
		if seen[j.Name] {
			errs = append(errs, fmt.Errorf("jobs[%d]: job %q twice", i, j.Name))
		}
		seen[j.Name] = true
		js := &jobState{Job: j}
		var err error
		if js.sched, err = ParseSchedule(j.Schedule); err != nil {
			errs = append(errs, fmt.Errorf("jobs[%d] (%s): %w", i, j.Name, err))
			continue
		}
		js.next = js.sched.Next(now)
		if j.FullSchedule != "" {
			if js.full, err = ParseSchedule(j.FullSchedule); err != nil {
				errs = append(errs, fmt.Errorf("jobs[%d] (%s): full_schedule: %w", i, j.Name, err))
				continue
			}
			js.nextFull = js.full.Next(now)
		}
		l.jobs = append(l.jobs, js)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return l, nil
}

// install points health and metrics at the jobs of l.
func (d *Daemon) install(l *live, now time.Time) {
	added, removed := d.health.set(l.jobs, l.setup.UnhealthyFailures, now)
	for _, name := range added {
		d.metrics.addJob(name)
	}
	for _, name := range removed {
		d.metrics.removeJob(name)
	}
}

// fire starts every job of l that is due at now and computes its next time
// from now, so that a late wake-up (a paused VM, a long reload) runs each
// job once rather than replaying every missed firing.
func (d *Daemon) fire(ctx context.Context, l *live, now time.Time) {
	for _, j := range l.jobs {
		due := !j.next.After(now)
		dueFull := j.full != nil && !j.nextFull.After(now)
		if !due && !dueFull {
			continue
		}
		if due {
			j.next = j.sched.Next(now)
		}
		if dueFull {
			j.nextFull = j.full.Next(now)
		}
		full := dueFull || j.fullPending
		if !d.start(ctx, l, j.Name, full) {
			d.log.Warn("run skipped: the previous run of the job is still going", "job", j.Name, "full", full)
			d.metrics.skipped.WithLabelValues(j.Name).Inc()
			j.fullPending = full
			continue
		}
		j.fullPending = false
	}
}

// start launches a run of job unless one is under way (in this setup or a
// replaced one); it reports whether it did.
func (d *Daemon) start(ctx context.Context, l *live, job string, full bool) bool {
	d.mu.Lock()
	if d.running[job] {
		d.mu.Unlock()
		return false
	}
	d.running[job] = true
	d.started++
	l.active++
	d.wg.Add(1)
	d.mu.Unlock()
	d.metrics.running.WithLabelValues(job).Set(1)
	go d.runJob(ctx, l, job, full)
	return true
}

func (d *Daemon) runJob(ctx context.Context, l *live, job string, full bool) {
	defer d.wg.Done()
	log := d.log.With("job", job)
	log.Info("run starting", "full", full)
	started := d.clock.Now()
	run := d.call(ctx, l.setup, job, full, log)
	finished := d.clock.Now()
	if run.StartedAt.IsZero() {
		run.StartedAt = started
	}
	if run.FinishedAt.IsZero() {
		run.FinishedAt = finished
	}
	took := finished.Sub(started)
	if streak, known := d.health.record(run, finished); known {
		d.metrics.record(run, took, finished, streak)
	}
	logRun(ctx, log, run, full, took)

	if l.setup.Notifier.Wants(run) {
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
		if err := l.setup.Notifier.Notify(nctx, run); err != nil {
			log.Error("notification failed", "run", run.ID, "err", err)
		}
		cancel()
	}

	d.mu.Lock()
	delete(d.running, job)
	l.active--
	closeNow := l.retired && l.active == 0 && !l.closed
	if closeNow {
		l.closed = true
	}
	d.mu.Unlock()
	d.metrics.running.WithLabelValues(job).Set(0)
	if closeNow {
		d.closeSetup(l.setup)
	}
	if d.afterRun != nil {
		d.afterRun(run)
	}
}

// call runs the job, turning a panic or an error without a recorded status
// into a failed run so that it is logged, counted and notified like any
// other failure.
func (d *Daemon) call(ctx context.Context, s *Setup, job string, full bool, log *slog.Logger) (run connector.Run) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("run panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			run = connector.Run{Job: job, Status: connector.StatusFailed, Reason: fmt.Sprintf("panic: %v", p)}
		}
	}()
	run, err := s.Run(ctx, job, full)
	if run.Job == "" {
		run.Job = job
	}
	if err != nil {
		if run.Status != connector.StatusBlocked {
			run.Status = connector.StatusFailed
		}
		if run.Reason == "" {
			run.Reason = err.Error()
		}
	}
	switch run.Status {
	case "":
		run.Status = connector.StatusOK
	case connector.StatusRunning:
		run.Status = connector.StatusFailed
		if run.Reason == "" {
			run.Reason = "the run returned before finishing"
		}
	}
	return run
}

// logRun writes the one line that sums a scheduled run up. The engine logs
// its own "run finished" line with the same figures, so this one is a debug
// line, except for a run the engine never recorded (run id 0: a panic, or a
// failure before the run started), which nothing else reports.
func logRun(ctx context.Context, log *slog.Logger, r connector.Run, full bool, took time.Duration) {
	level := slog.LevelDebug
	if r.ID == 0 && r.Status != connector.StatusOK {
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.Int64("run", r.ID), slog.String("status", r.Status), slog.Bool("full", full),
		slog.Int("created", r.Created), slog.Int("updated", r.Updated), slog.Int("deleted", r.Deleted),
		slog.Int("unchanged", r.Unchanged), slog.Int("rejected", r.Rejected), slog.Int("waiting", r.Waiting),
		slog.Int("source_records", r.Counts.Source), slog.Duration("took", took),
	}
	if r.Reason != "" {
		attrs = append(attrs, slog.String("reason", r.Reason))
	}
	log.LogAttrs(ctx, level, "scheduled run done", attrs...)
}

// reload loads the configuration again. A configuration that cannot be
// loaded or started is refused and the running one goes on; a good one
// takes over scheduling at once while the old setup's running jobs finish
// on it, and the old setup is closed after them.
func (d *Daemon) reload(cur *live, srv *server) (*live, *server) {
	d.sdnotify("RELOADING=1")
	defer d.sdnotify("READY=1")
	d.log.Info("reloading the configuration")
	refuse := func(err error, s *Setup) (*live, *server) {
		d.log.Error("configuration refused; the running configuration stays in use", "err", err)
		d.metrics.reloads.WithLabelValues("refused").Inc()
		if s != nil {
			d.closeSetup(s)
		}
		return cur, srv
	}
	setup, err := d.opts.Load()
	if err != nil {
		return refuse(err, nil)
	}
	now := d.clock.Now()
	next, err := prepare(setup, now)
	if err != nil {
		return refuse(err, setup)
	}
	nsrv := srv
	if setup.Listen != cur.setup.Listen {
		if nsrv, err = d.serve(setup.Listen); err != nil {
			return refuse(err, setup)
		}
		srv.stop()
	}
	// A job kept across the reload keeps a full pull it owes.
	for _, j := range next.jobs {
		for _, o := range cur.jobs {
			if o.Name == j.Name && o.fullPending {
				j.fullPending = true
			}
		}
	}
	d.install(next, now)
	d.retire(cur)
	d.metrics.reloads.WithLabelValues("ok").Inc()
	d.status(next)
	d.log.Info("configuration reloaded", "jobs", jobNames(next), "listen", setup.Listen)
	return next, nsrv
}

// retire stops scheduling l and closes it now or after its last run.
func (d *Daemon) retire(l *live) {
	d.mu.Lock()
	l.retired = true
	closeNow := l.active == 0 && !l.closed
	if closeNow {
		l.closed = true
	}
	d.mu.Unlock()
	if closeNow {
		d.closeSetup(l.setup)
	}
}

func (d *Daemon) closeSetup(s *Setup) {
	if s == nil || s.Close == nil {
		return
	}
	if err := s.Close(); err != nil {
		d.log.Error("closing the configuration's resources", "err", err)
	}
}

// shutdown waits for running jobs for the grace period, then cancels them
// so that the engine records them failed, and waits for that.
func (d *Daemon) shutdown(cur *live, srv *server, cancelRuns context.CancelFunc) error {
	d.sdnotify("STOPPING=1")
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	var err error
	if len(d.runningJobs()) == 0 {
		// Nothing runs: the last runs' goroutines are only returning.
		d.log.Info("stopping")
		<-done
	} else {
		d.log.Info("stopping: waiting for running jobs", "jobs", d.runningJobs(), "grace", d.opts.Grace)
		grace := d.clock.NewTimer(d.opts.Grace)
		select {
		case <-done:
			grace.Stop()
		case <-grace.C():
			d.log.Warn("grace period over: interrupting running jobs", "jobs", d.runningJobs())
			cancelRuns()
			hard := d.clock.NewTimer(abandonAfter)
			select {
			case <-done:
				hard.Stop()
			case <-hard.C():
				err = fmt.Errorf("daemon: jobs %s still running %s after they were interrupted",
					strings.Join(d.runningJobs(), ", "), abandonAfter)
			}
		}
	}
	if err == nil {
		d.retire(cur)
	}
	srv.stop()
	if err != nil {
		d.log.Error("stopped", "err", err)
		return err
	}
	d.log.Info("stopped")
	return nil
}

func (d *Daemon) runningJobs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.running))
	for n := range d.running {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (d *Daemon) sdnotify(state string) {
	if d.opts.Notify == nil {
		return
	}
	if err := d.opts.Notify(state); err != nil {
		d.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

func (d *Daemon) status(l *live) {
	d.sdnotify(fmt.Sprintf("STATUS=scheduling %d job(s): %s", len(l.jobs), strings.Join(jobNames(l), ", ")))
}

func jobNames(l *live) []string {
	out := make([]string, len(l.jobs))
	for i, j := range l.jobs {
		out[i] = j.Name
	}
	return out
}

// server is the HTTP listener of /metrics and /healthz; a nil *server
// serves nothing.
type server struct {
	srv *http.Server
	log *slog.Logger
}

func (d *Daemon) serve(addr string) (*server, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("daemon: listen %s: %w", addr, err)
	}
	s := &server{
		srv: &http.Server{Handler: d.handler, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)},
		log: d.log,
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server stopped", "listen", addr, "err", err)
		}
	}()
	d.log.Info("serving /metrics and /healthz", "listen", ln.Addr().String())
	return s, nil
}

func (s *server) stop() {
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.log.Warn("metrics server shutdown", "err", err)
	}
}
