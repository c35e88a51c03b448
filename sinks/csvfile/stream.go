package csvfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/contactsync/contactsync/connector"
)

var _ connector.StreamingSink = (*Sink)(nil)

// OpenStream starts a run's import files before Apply: the engine hands it
// the plan's first creates while the source is still read. Rows go into
// the temporary files Apply would write, with the same numbering; nothing
// gets its final name before the stream's Apply, after the run's guards.
// A crash leaves only temporary files of the run, which RemoveRunFiles
// removes.
func (s *Sink) OpenStream(ctx context.Context, run connector.RunInfo) (connector.OutputStream, error) {
	e, err := s.newEmission(ctx, run)
	if err != nil {
		return nil, err
	}
	e.streaming = true
	return &stream{e: e}, nil
}

// stream is an emission written ahead of Apply.
type stream struct {
	e        *emission
	dirReady bool
	err      error // sticky: a failed stream writes nothing more
	over     bool  // applied or aborted
}

// Create writes one create into the current import file. A file that
// fills up is synced and held under its temporary name.
func (st *stream) Create(c *connector.Change) error {
	if st.err != nil {
		return st.err
	}
	if c.Action != connector.ActionCreate {
		st.err = fmt.Errorf("csvfile: streamed change %q: unexpected action %q", c.Key, c.Action)
		return st.err
	}
	if !st.dirReady {
		if st.err = st.e.makeDir(); st.err != nil {
			return st.err
		}
		st.dirReady = true
	}
	st.err = st.e.importRow(c)
	return st.err
}

// Apply writes the rest of the plan after the streamed creates and renames
// every file into place, as Sink.Apply does.
func (st *stream) Apply(ctx context.Context, plan connector.Plan, _ connector.Outcomes) (connector.ApplyResult, error) {
	if st.over {
		return connector.ApplyResult{}, errors.New("csvfile: stream applied or aborted already")
	}
	st.over = true
	if st.err != nil {
		// The engine aborts a failed stream; never publish half of one.
		st.e.rollback()
		return connector.ApplyResult{}, st.err
	}
	return st.e.apply(ctx, plan)
}

// Abort removes every file the stream wrote, and the outbox folder if the
// stream created it.
func (st *stream) Abort() {
	if st.over {
		return
	}
	st.over = true
	st.e.rollback()
}

// hold flushes the full import file and hands it to a goroutine that
// makes it durable under its temporary name. The fsync is not the
// stream's: the engine's pull waits whenever the stream falls a few
// batches behind, and an fsync while SQLite writes its WAL can take tens
// of milliseconds.
func (e *emission) hold() error {
	f := e.imp
	e.imp = nil
	if err := f.cw.flush(); err != nil {
		f.abort()
		return fmt.Errorf("csvfile: write %s: %w", f.final, err)
	}
	// A held file keeps only its names: its 256 KB buffer, kept for each
	// of a million-row import's 100 files, was 25 MB of live heap.
	f.cw = nil
	e.held = append(e.held, f)
	if e.syncq == nil {
		e.syncq, e.synced = make(chan *outFile, 16), make(chan struct{})
		go syncHeld(e.syncq, e.synced)
	}
	e.syncq <- f
	return nil
}

func syncHeld(q <-chan *outFile, done chan<- struct{}) {
	defer close(done)
	for f := range q {
		f.syncErr = f.finish()
	}
}

// waitSynced returns once every held file went through finish: before
// they are published or removed.
func (e *emission) waitSynced() {
	if e.syncq == nil {
		return
	}
	close(e.syncq)
	<-e.synced
	e.syncq = nil
}

// publishHeld renames the files held by a stream into place, in order,
// as commit would have when each filled up, then syncs the folder once:
// the renames are durable before Apply returns, as with one sync each
// (a 1,000,000-row import holds 100 files).
func (e *emission) publishHeld() error {
	e.waitSynced()
	renamed := false
	for len(e.held) > 0 {
		f := e.held[0]
		e.held = e.held[1:]
		if f.syncErr != nil {
			return f.syncErr
		}
		if err := f.rename(); err != nil {
			return err
		}
		renamed = true
		e.written = append(e.written, f.final)
		e.log.Info("csvfile: wrote file", "file", f.final, "rows", f.rows)
	}
	e.held = nil
	if renamed {
		return syncDir(e.s.dir)
	}
	return nil
}

// makeDir creates the outbox for a stream, remembering the outermost
// folder it created: a run that never reaches Apply must not leave an
// outbox that Apply would not have created.
func (e *emission) makeDir() error {
	made := ""
	for p := e.s.dir; ; {
		if _, err := os.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		made = p
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	if err := os.MkdirAll(e.s.dir, 0o750); err != nil {
		return fmt.Errorf("csvfile: outbox: %w", err)
	}
	e.madeDir = made
	return nil
}

// removeMadeDir removes the folders makeDir created, innermost first, if
// they are empty.
func (e *emission) removeMadeDir() {
	if e.madeDir == "" {
		return
	}
	for p := e.s.dir; ; p = filepath.Dir(p) {
		if os.Remove(p) != nil || p == e.madeDir {
			break
		}
	}
	e.madeDir = ""
}
