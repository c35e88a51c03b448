package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// staging writes a run's changes into the store's open transaction on a
// goroutine of its own while the sink emits them, so that the commit after
// the sink is left with little more than the run row.
type staging struct {
	stage Stage
	stop  atomic.Bool
	done  chan struct{}
	err   error // valid once done is closed
	cr    ChangeRecord
}

// errStagingStopped ends a staging goroutine that the run no longer needs.
var errStagingStopped = errors.New("staging stopped")

// startStaging opens a stage when the run's state can be written before
// the sink is done: the sink applies all or nothing and reports no
// outcome, so the records the commit stores are known before it starts.
// It returns nil when the run commits as before.
func (r *runner) startStaging(ctx context.Context) (*staging, error) {
	if _, ok := r.job.Sink.(AtomicSink); !ok || r.opts.DryRun || len(r.adopted) > 0 {
		return nil, nil
	}
	st, ok := r.e.Store.(Stager)
	if !ok || !r.sp.any(segCreate, segUpdate, segDelete, segTouch) {
		// Nothing to stage: the commit only records the run.
		return nil, nil
	}
	// The staging goroutine and the sink read the spool at once.
	if err := r.sp.flush(); err != nil {
		return nil, err
	}
	stage, err := st.Stage(ctx, r.res.Run)
	if err != nil {
		return nil, err
	}
	s := &staging{stage: stage, done: make(chan struct{})}
	// The sink reports nothing: the changes are translated with no
	// outcome, as the commit would translate them.
	none := &outcomes{}
	go func() {
		defer close(s.done)
		defer func() {
			if p := recover(); p != nil {
				s.err = fmt.Errorf("staging: panic: %v", p)
			}
		}()
		s.err = stage.Apply(ctx, func(yield func(*ChangeRecord) error) error {
			return r.eachRecordWith(none, &s.cr, r.sp.each, func(cr *ChangeRecord) error {
				if s.stop.Load() {
					return errStagingStopped
				}
				return yield(cr)
			})
		})
	}()
	return s, nil
}

// wait returns once everything is staged.
func (s *staging) wait() error {
	<-s.done
	return s.err
}

// close stops the staging goroutine and rolls back what was staged, unless
// the stage was committed: it must run before anything else writes to the
// store.
func (s *staging) close(log *slog.Logger) {
	s.stop.Store(true)
	<-s.done
	if err := s.stage.Rollback(); err != nil {
		log.Error("could not roll back the staged state", "err", err)
	}
}
