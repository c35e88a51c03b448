package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/contactsync/contactsync/config"
	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/daemon"
	"github.com/contactsync/contactsync/notify"
	"github.com/contactsync/contactsync/state"
)

// runDaemon is `contactsync run`: it takes the state lock for its whole
// life, then lets package daemon schedule the jobs, reloading the
// configuration on SIGHUP.
func runDaemon(ctx context.Context, c *cmdCtx) int {
	c.flags()
	if !c.parseNone() {
		return ExitUsage
	}
	se, code := c.open(ctx, true, true)
	if se == nil {
		return code
	}
	defer se.close()
	cfg, log, db := se.cfg, se.log, se.db
	statePath := cfg.State
	first := cfg
	var mu sync.Mutex
	load := func() (*daemon.Setup, error) {
		mu.Lock()
		defer mu.Unlock()
		next := first
		first = nil
		if next == nil {
			var err error
			if next, err = config.Load(c.cfgPath); err != nil {
				return nil, err
			}
			if next.State != statePath {
				return nil, fmt.Errorf("config: state cannot change while the daemon runs (%s, was %s): restart the service", next.State, statePath)
			}
		}
		return setup(ctx, next, log, db)
	}
	err := daemon.Run(ctx, daemon.Options{
		Load:   load,
		Logger: log,
		Reload: c.io.Reload,
		Grace:  daemon.DefaultGrace,
		Notify: daemon.Systemd,
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return c.fail(err)
	}
	return ExitOK
}

// setup builds what the daemon schedules from one configuration.
func setup(ctx context.Context, cfg *config.Config, log *slog.Logger, db *state.DB) (*daemon.Setup, error) {
	jobs, err := cfg.Build(nil, log, db)
	if err != nil {
		return nil, err
	}
	eng := &connector.Engine{Store: db, Logger: log}
	if err := eng.Recover(ctx, jobs); err != nil {
		closeJobs(jobs)
		return nil, err
	}
	byName := map[string]*connector.Job{}
	s := &daemon.Setup{Listen: cfg.ListenAddr(), Close: func() error { closeJobs(jobs); return nil }}
	for _, j := range jobs {
		byName[j.Name] = j
		jc, _ := cfg.Job(j.Name)
		s.Jobs = append(s.Jobs, daemon.Job{Name: j.Name, Schedule: jc.Schedule, FullSchedule: jc.FullSchedule})
	}
	if cfg.Notify != nil {
		n, err := notify.New(cfg.Notify, log)
		if err != nil {
			closeJobs(jobs)
			return nil, err
		}
		s.Notifier = n
	}
	s.Run = func(ctx context.Context, name string, full bool) (connector.Run, error) {
		res, err := eng.Run(ctx, byName[name], connector.RunOptions{Full: full, Trigger: "schedule"})
		return res.Run, err
	}
	return s, nil
}
