package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// staging writes a run's state into the store's open transaction on a
// goroutine of its own, so that SQLite's work overlaps the pull's and the
// sink's instead of following them: first the applied creates of keys the
// state does not hold (fresh keys), as the pull decides them, then, once
// the guards passed, every other change while the sink writes. The commit
// after the sink is left with the run row.
//
// A staged create is one the commit would store exactly so: the sink
// applies all or nothing and reports no outcome, and a fresh key's entry
// depends on nothing else. When a later record of the key undoes it, the
// staging goroutine reverts it, in order with the creates.
type staging struct {
	stager Stager
	// ctx is the run's: the stage opens in the middle of the pull, from
	// decide, which has no context of its own.
	ctx     context.Context
	run     Run
	started bool // the stage is open and its goroutine runs
	stage   Stage
	// recall: the stage gives its creates back (CreateRecaller), so the
	// spool may skip them while the output stream takes them.
	recall bool
	ch     chan *stageBatch // to the staging goroutine, in spool order
	free   chan *stageBatch
	cur    *stageBatch
	// rest applies the changes not staged during the pull; set before ch
	// is closed, when the run goes on to its sink.
	rest   func(yield func(*ChangeRecord) error) error
	closed bool
	stop   atomic.Bool // the run no longer needs the staging
	bad    atomic.Bool // the staging failed: err says why, once done
	done   chan struct{}
	err    error // valid once done is closed
	cr     ChangeRecord
}

// stageBatchSize is how many creates or reverts go to the staging
// goroutine at once: a hand-over and a cgo transition per batch.
const stageBatchSize = 256

type stageBatch struct {
	n   int
	ops [stageBatchSize]stageOp
	// call, when set, is run on the staging goroutine in the batch's
	// place; ack is closed once it returned err.
	call func(CreateRecaller) error
	ack  chan struct{}
	err  error
}

type stageOp struct {
	revert bool
	key    string
	c      Contact
	src    Hash
	hash   Hash   // c.Hash(), from the mapping
	json   []byte // c.Marshal(), from the mapping
}

// errStagingStopped ends a staging goroutine that the run no longer needs.
var errStagingStopped = errors.New("staging stopped")

// startStaging opens a stage when the run's state can be written before
// the sink is done: the sink applies all or nothing and reports no
// outcome, so the records the commit stores are known before it starts.
// It returns nil when the run commits as before.
func (r *runner) startStaging(ctx context.Context) (*staging, error) {
	if _, ok := r.job.Sink.(AtomicSink); !ok || r.opts.DryRun {
		return nil, nil
	}
	// An adopted create becomes a bind, known only after the pull.
	if _, ok := r.job.Sink.(Adopter); ok {
		return nil, nil
	}
	st, ok := r.e.Store.(Stager)
	if !ok {
		return nil, nil
	}
	return &staging{stager: st, ctx: ctx, run: r.res.Run}, nil
}

// start opens the stage and its goroutine, on the first change to stage:
// a run that changes nothing takes the writer only to record itself.
func (s *staging) start() error {
	stage, err := s.stager.Stage(s.ctx, s.run)
	if err != nil {
		return err
	}
	s.stage, s.started = stage, true
	_, s.recall = stage.(CreateRecaller)
	s.ch, s.free, s.done = make(chan *stageBatch, 4), make(chan *stageBatch, 6), make(chan struct{})
	go s.loop(s.ctx)
	return nil
}

func (s *staging) loop(ctx context.Context) {
	defer close(s.done)
	defer func() {
		if p := recover(); p != nil {
			s.err = fmt.Errorf("staging: panic: %v", p)
			s.bad.Store(true)
			for range s.ch { // the runner may still be sending
			}
		}
	}()
	for b := range s.ch {
		if b.call != nil {
			switch {
			case s.err != nil:
				b.err = s.err
			case s.stop.Load():
				b.err = errStagingStopped
			default:
				b.err = s.callSafely(b.call)
			}
			close(b.ack)
			continue
		}
		if s.err == nil && !s.stop.Load() {
			if s.err = s.apply(ctx, b); s.err != nil {
				s.bad.Store(true)
			}
		}
		b.n = 0
		select {
		case s.free <- b:
		default:
		}
	}
	if s.err != nil || s.rest == nil || s.stop.Load() {
		return
	}
	s.err = s.stage.Apply(ctx, func(yield func(*ChangeRecord) error) error {
		return s.rest(func(cr *ChangeRecord) error {
			if s.stop.Load() {
				return errStagingStopped
			}
			return yield(cr)
		})
	})
}

// apply stages a batch: runs of creates in one Apply, reverts one by one.
func (s *staging) apply(ctx context.Context, b *stageBatch) error {
	for i := 0; i < b.n; {
		if b.ops[i].revert {
			if err := s.stage.Revert(ctx, b.ops[i].key); err != nil {
				return err
			}
			i++
			continue
		}
		j := i
		for j < b.n && !b.ops[j].revert {
			j++
		}
		ops := b.ops[i:j]
		err := s.stage.Apply(ctx, func(yield func(*ChangeRecord) error) error {
			for k := range ops {
				op := &ops[k]
				// As translate makes an applied create with no outcome.
				s.cr = ChangeRecord{Action: ActionCreate, Key: op.key, New: &op.c, Status: EntryPending, Applied: true, SourceHash: op.src, NewHash: op.hash, NewJSON: op.json}
				if err := yield(&s.cr); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		i = j
	}
	return nil
}

// op returns the next slot of the filling batch. A send never blocks for good: the goroutine drains the channel until it
// is closed, even after a failure.
func (s *staging) op() *stageOp {
	if s.cur == nil {
		select {
		case s.cur = <-s.free:
		default:
			s.cur = &stageBatch{}
		}
	}
	return &s.cur.ops[s.cur.n]
}

// added counts the op filled in, and sends the batch once it is full:
// never before the op is written, which the staging goroutine reads.
func (s *staging) added() {
	s.cur.n++
	if s.cur.n == stageBatchSize {
		s.send()
	}
}

func (s *staging) send() {
	if s.cur != nil && s.cur.n > 0 {
		s.ch <- s.cur
	}
	s.cur = nil
}

// create stages the applied create of a fresh key; json is c.Marshal(), or
// nil.
func (s *staging) create(key string, c *Contact, src, hash Hash, json []byte) error {
	if !s.started {
		if err := s.start(); err != nil {
			return err
		}
	}
	if s.bad.Load() {
		return s.failure()
	}
	*s.op() = stageOp{key: key, c: *c, src: src, hash: hash, json: json}
	s.added()
	return nil
}

// callSafely runs fn with the stage; a panic is its error, since the
// runner waits for the answer.
func (s *staging) callSafely(fn func(CreateRecaller) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("staging: panic: %v", p)
		}
	}()
	return fn(s.stage.(CreateRecaller))
}

// withCreates runs fn on the staging goroutine once it has applied
// everything handed to it so far, and waits for it.
func (s *staging) withCreates(fn func(CreateRecaller) error) error {
	if s.bad.Load() {
		return s.failure()
	}
	if s.closed {
		return errors.New("staging: the stage takes no more work")
	}
	s.send()
	b := &stageBatch{call: fn, ack: make(chan struct{})}
	s.ch <- b
	<-b.ack
	return b.err
}

// keepStaged writes into the spool the staged creates it skipped while
// the output stream took them: once the stream is gone, the plan gives
// them to the sink.
func (r *runner) keepStaged(seg int) error {
	if !r.sp.hasSkipped(seg) {
		return nil
	}
	return r.stg.withCreates(func(rc CreateRecaller) error {
		return r.sp.refill(seg, func(yield func(string, *Contact) error) error {
			return rc.Created(r.stg.ctx, yield)
		})
	})
}

// revert undoes the staged create of key.
func (s *staging) revert(key string) {
	*s.op() = stageOp{revert: true, key: key}
	s.added()
}

// failure ends the staging goroutine and returns why it failed.
func (s *staging) failure() error {
	s.closeCh()
	<-s.done
	return s.err
}

func (s *staging) closeCh() {
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// unstaged reads a spool segment without the creates staged during the
// pull.
func (r *runner) unstaged(seg int, fn func(*spoolRec) error) error {
	if _, all := r.sp.allStaged(seg); all {
		// Nothing to read, and the records may not be in the spool at
		// all (spool.skip).
		return nil
	}
	return r.sp.each(seg, func(rec *spoolRec) error {
		if rec.flags&flagStaged != 0 {
			return nil
		}
		return fn(rec)
	})
}

// finish hands the staging goroutine the rest of the changes, to stage
// while the sink writes. rest skips what was staged during the pull.
func (s *staging) finish(r *runner) error {
	if !s.started {
		if !r.sp.any(segCreate, segUpdate, segDelete, segTouch) {
			return nil // nothing to stage: the commit records the run
		}
		if err := s.start(); err != nil {
			return err
		}
	}
	if s.closed {
		return nil
	}
	if !r.sp.anyUnstaged(segCreate, segUpdate, segDelete, segTouch) {
		// Everything was staged during the pull (a first import): reading
		// the spool again only to skip every record cost a million record
		// reads at 1,000,000 creates.
		s.send()
		s.closeCh()
		return nil
	}
	// The staging goroutine and the sink read the spool at once.
	if err := r.sp.flush(); err != nil {
		return err
	}
	s.send()
	// The sink reports nothing: the changes are translated with no
	// outcome, as the commit would translate them.
	none := &outcomes{}
	s.rest = func(yield func(*ChangeRecord) error) error {
		return r.eachRecordWith(none, &s.cr, r.unstaged, yield)
	}
	s.closeCh()
	return nil
}

// wait returns once everything is staged.
func (s *staging) wait() error {
	if !s.started {
		return nil
	}
	s.send()
	s.closeCh()
	<-s.done
	return s.err
}

// close stops the staging goroutine and rolls back what was staged, unless
// the stage was committed: it must run before anything else writes to the
// store.
func (s *staging) close(log *slog.Logger) {
	if !s.started {
		return
	}
	s.stop.Store(true)
	s.cur = nil
	s.closeCh()
	<-s.done
	if err := s.stage.Rollback(); err != nil {
		log.Error("could not roll back the staged state", "err", err)
	}
}
