package connector

import (
	"context"
	"fmt"
	"sync/atomic"
)

// outStream feeds a StreamingSink's OutputStream, on a goroutine of its
// own, the creates that the staging goroutine receives (applied creates of
// fresh keys), in the same order: a first import's files are then written
// during the pull, on the core the pull leaves idle, instead of after it.
//
// The stream is only right while the plan's creates segment begins with
// exactly the streamed sequence. The rule that keeps it so is simple: the
// stream is abandoned (aborted; Apply then writes everything from the
// plan) as soon as a staged create is undone, or a create is spooled that
// was not staged. Creates spooled after the pull (failed creates retried)
// follow the streamed ones, and Apply writes them. The stream is output
// only: counts and state never depend on it.
type outStream struct {
	out  OutputStream
	ch   chan *streamBatch // to the stream goroutine, in spool order
	free chan *streamBatch
	cur  *streamBatch
	stop atomic.Bool // abandoned: the goroutine drops what it still gets
	bad  atomic.Bool // a Create failed: err says why, once done
	done chan struct{}
	err  error // valid once done is closed
}

// streamBatchSize is how many creates go to the stream goroutine at once.
const streamBatchSize = 256

type streamBatch struct {
	n   int
	ops [streamBatchSize]streamOp
}

type streamOp struct {
	key string
	c   Contact
}

// openStream starts the run's output stream when the creates of the pull
// are staged (they are then applied creates whatever comes next, unless
// undone) and the sink can write ahead of Apply.
func (r *runner) openStream(ctx context.Context) {
	ss, ok := r.job.Sink.(StreamingSink)
	if !ok || r.stg == nil {
		return
	}
	out, err := ss.OpenStream(ctx, r.runInfo())
	if err != nil {
		// Apply reports it, as it would without a stream.
		r.log.Debug("output not streamed", "err", err)
		return
	}
	s := &outStream{out: out, ch: make(chan *streamBatch, 4), free: make(chan *streamBatch, 6), done: make(chan struct{})}
	go s.loop()
	r.out = s
}

func (r *runner) runInfo() RunInfo {
	return RunInfo{Job: r.job.Name, RunID: r.res.Run.ID, Started: r.res.Run.StartedAt, Logger: r.log, Journal: r.e.Store}
}

func (s *outStream) loop() {
	defer close(s.done)
	defer func() {
		if p := recover(); p != nil {
			s.err = fmt.Errorf("output stream: panic: %v", p)
			s.bad.Store(true)
			for range s.ch { // the runner may still be sending
			}
		}
	}()
	var c Change
	for b := range s.ch {
		for i := 0; i < b.n && s.err == nil && !s.stop.Load(); i++ {
			op := &b.ops[i]
			c = Change{Action: ActionCreate, Key: op.key, Contact: op.c}
			if s.err = s.out.Create(&c); s.err != nil {
				s.bad.Store(true)
			}
		}
		b.n = 0
		select {
		case s.free <- b:
		default:
		}
	}
}

// streamCreate hands the stream the create just staged.
func (r *runner) streamCreate(key string, c *Contact) {
	s := r.out
	if s.bad.Load() {
		// Apply writes everything again, and meets the failure itself.
		r.abandonStream()
		return
	}
	if s.cur == nil {
		select {
		case s.cur = <-s.free:
		default:
			s.cur = &streamBatch{}
		}
	}
	op := &s.cur.ops[s.cur.n]
	op.key, op.c = key, *c
	if s.cur.n++; s.cur.n == streamBatchSize {
		s.send()
	}
}

func (s *outStream) send() {
	if s.cur != nil && s.cur.n > 0 {
		s.ch <- s.cur
	}
	s.cur = nil
}

// abandonStream drops the stream and what it wrote: Apply writes the
// whole plan as it would without one. Safe when there is no stream.
func (r *runner) abandonStream() {
	s := r.out
	if s == nil {
		return
	}
	r.out = nil
	s.stop.Store(true)
	s.cur = nil
	close(s.ch)
	<-s.done
	s.out.Abort()
}

// finishStream waits until every streamed create is written and returns
// the stream, ready for Apply; nil when there is none, or it failed (then
// it is aborted, and Apply writes everything).
func (r *runner) finishStream() OutputStream {
	s := r.out
	if s == nil {
		return nil
	}
	s.send()
	close(s.ch)
	<-s.done
	r.out = nil
	if s.err != nil {
		r.log.Debug("output stream failed; writing the output from the plan", "err", s.err)
		s.out.Abort()
		return nil
	}
	return s.out
}
