package csvfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/contactsync/contactsync/connector"
)

// Sink writes Control Hub CSV files into an outbox folder.
type Sink struct {
	dir     string
	maxRows int
	bom     bool
	layout  *layout
	job     string
	log     *slog.Logger
	src     string // header_from, for messages
}

var (
	_ connector.Sink    = (*Sink)(nil)
	_ connector.Checker = (*Sink)(nil)
)

// ErrNoUUIDColumn is returned by Apply when the plan holds updates but the
// header_from header has no Contact UUID column: Control Hub would read such
// rows as new contacts and duplicate them.
var ErrNoUUIDColumn = errors.New("header_from has no \"Contact UUID\" column, so updates cannot be written (they would create duplicates): use a Control Hub export or the 28-column template as header_from")

// Report headers.
var (
	deleteHeader   = []string{"Display Name", "Contact UUID", "Reason"}
	rejectedHeader = []string{"Key", "Origin", "Reason"}
)

// Apply writes the plan's files into the outbox. Either every file is
// written under its final name, or none is: on any failure the files this
// call already wrote are removed. Nothing is reported to out: creates stay
// pending until reconcile binds their UUIDs.
func (s *Sink) Apply(ctx context.Context, run connector.RunInfo, plan connector.Plan, _ connector.Outcomes) (connector.ApplyResult, error) {
	e, err := s.newEmission(ctx, run)
	if err != nil {
		return connector.ApplyResult{}, err
	}
	return e.apply(ctx, plan)
}

// newEmission checks that the run's files can be named, and prepares
// their writing.
func (s *Sink) newEmission(ctx context.Context, run connector.RunInfo) (*emission, error) {
	job := run.Job
	if job == "" {
		job = s.job
	}
	if job == "" || strings.ContainsAny(job, `/\`) || strings.HasPrefix(job, ".") {
		return nil, fmt.Errorf("csvfile: bad job name %q for a file name", job)
	}
	if run.RunID <= 0 {
		return nil, fmt.Errorf("csvfile: job %s: bad run id %d", job, run.RunID)
	}
	log := run.Logger
	if log == nil {
		log = s.log
	}
	return &emission{s: s, ctx: ctx, log: log, job: job, prefix: runPrefix(job, run.RunID), rec: make([]string, len(s.layout.header))}, nil
}

// apply writes the plan's files, after what a stream wrote if any, and
// renames them into place; on failure it removes them all.
func (e *emission) apply(ctx context.Context, plan connector.Plan) (connector.ApplyResult, error) {
	e.ctx, e.streaming = ctx, false
	err := e.check(plan)
	if err == nil {
		err = e.publishHeld()
	}
	if err == nil {
		err = e.run(plan)
	}
	if err != nil {
		e.rollback()
		return connector.ApplyResult{}, err
	}
	return connector.ApplyResult{Files: e.written}, nil
}

// check makes sure that the plan can be written, before anything is
// renamed into place.
func (e *emission) check(plan connector.Plan) error {
	s := e.s
	if plan.Counts().Updated > 0 && !s.layout.hasUUID() {
		return fmt.Errorf("csvfile: job %s: %d updates: %w (%s)", e.job, plan.Counts().Updated, ErrNoUUIDColumn, s.src)
	}
	if err := e.ctx.Err(); err != nil {
		return fmt.Errorf("csvfile: job %s: %w", e.job, err)
	}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("csvfile: outbox: %w", err)
	}
	// Without a stream the outbox would exist from here on, failure or not.
	e.madeDir = ""
	return nil
}

// AtomicApply says that Apply writes all of the plan or nothing, and
// reports no outcome: the engine may stage the run's state meanwhile.
func (*Sink) AtomicApply() {}

var _ connector.AtomicSink = (*Sink)(nil)

// outputRemover is the engine's connector.OutputRemover, spelled out so
// that this package builds against a connector that does not declare it.
type outputRemover interface {
	RemoveOutput(job string, runID int64) ([]string, error)
}

var _ outputRemover = (*Sink)(nil)

// RemoveOutput removes the files of one run from the outbox (see
// RemoveRunFiles): the engine calls it for a run that was interrupted or
// could not be committed, whose files must never be uploaded.
func (s *Sink) RemoveOutput(job string, runID int64) ([]string, error) {
	return RemoveRunFiles(s.dir, job, runID)
}

// emission is the state of one Apply.
type emission struct {
	s       *Sink
	ctx     context.Context
	log     *slog.Logger
	job     string
	prefix  string
	rec     []string // reused import row
	imp     *outFile // current import file
	impN    int      // import files started
	del     *outFile
	rej     *outFile
	written []string
	// streaming: the import files that fill up are held, written and
	// synced under their temporary names, until apply renames them.
	streaming bool
	held      []*outFile
	// madeDir is the outermost folder a stream created for the outbox, to
	// remove if the run never gets to apply.
	madeDir string
	// syncq hands held files to the goroutine that syncs them, which
	// closes synced when done; nil: none started.
	syncq  chan *outFile
	synced chan struct{}
}

// ctxEvery is how many rows go by between two looks at the context: often
// enough to stop a large run promptly, rare enough to cost nothing.
const ctxEvery = 1024

func (e *emission) run(plan connector.Plan) error {
	n := 0
	err := plan.Changes(func(c *connector.Change) error {
		if n++; n%ctxEvery == 0 {
			if err := e.ctx.Err(); err != nil {
				return fmt.Errorf("csvfile: %w", err)
			}
		}
		switch c.Action {
		case connector.ActionCreate, connector.ActionUpdate:
			return e.importRow(c)
		case connector.ActionDelete:
			return e.deleteRow(c)
		}
		return fmt.Errorf("csvfile: change %q: unexpected action %q", c.Key, c.Action)
	})
	if err != nil {
		return err
	}
	if err := plan.Rejected(e.rejectedRow); err != nil {
		return err
	}
	if err := e.ctx.Err(); err != nil {
		return fmt.Errorf("csvfile: %w", err)
	}
	for _, o := range []**outFile{&e.imp, &e.del, &e.rej} {
		if err := e.commit(o); err != nil {
			return err
		}
	}
	return nil
}

func (e *emission) importRow(c *connector.Change) error {
	uuid := ""
	if c.Action == connector.ActionUpdate {
		if !e.s.layout.hasUUID() {
			return fmt.Errorf("csvfile: update of %q: %w (%s)", c.Key, ErrNoUUIDColumn, e.s.src)
		}
		if c.UUID == "" {
			// Written without its UUID, the row would create a duplicate.
			return fmt.Errorf("csvfile: update of %q has no contact UUID", c.Key)
		}
		uuid = c.UUID
	}
	if e.imp == nil {
		e.impN++
		o, err := createFile(e.s.dir, importName(e.prefix, e.impN), e.s.bom, e.s.layout.header)
		if err != nil {
			return err
		}
		e.imp = o
	}
	// Values are written verbatim: Control Hub stores them as data, and a
	// quote added against spreadsheet formulas would become part of the
	// contact (a "+33..." phone number must stay as it is).
	for i, col := range e.s.layout.cols {
		switch {
		case col >= 0:
			e.rec[i] = c.Contact[col]
		case col == colUUID:
			e.rec[i] = uuid
		default:
			e.rec[i] = ""
		}
	}
	if err := e.imp.write(e.rec); err != nil {
		return err
	}
	if e.imp.rows >= e.s.maxRows {
		if e.streaming {
			return e.hold()
		}
		return e.commit(&e.imp)
	}
	return nil
}

func (e *emission) deleteRow(c *connector.Change) error {
	if e.del == nil {
		o, err := createFile(e.s.dir, e.prefix+deleteName, e.s.bom, deleteHeader)
		if err != nil {
			return err
		}
		e.del = o
	}
	reason := c.Reason
	if c.UUID == "" {
		reason = strings.TrimSpace(reason + " (no UUID: created by a file that was never reconciled; find it by name)")
	}
	return e.del.write([]string{neutralise(c.Contact[connector.DisplayName]), neutralise(c.UUID), neutralise(reason)})
}

func (e *emission) rejectedRow(r connector.Rejection) error {
	if e.rej == nil {
		o, err := createFile(e.s.dir, e.prefix+rejectedName, e.s.bom, rejectedHeader)
		if err != nil {
			return err
		}
		e.rej = o
	}
	return e.rej.write([]string{neutralise(r.Key), neutralise(r.Origin), neutralise(r.Reason)})
}

// commit finishes *o, if open, and records its final path.
func (e *emission) commit(o **outFile) error {
	f := *o
	if f == nil {
		return nil
	}
	*o = nil
	if err := f.commit(); err != nil {
		return err
	}
	e.written = append(e.written, f.final)
	e.log.Info("csvfile: wrote file", "file", f.final, "rows", f.rows)
	return nil
}

// rollback removes every file of this emission, open, held or committed,
// so that nothing half-emitted is ever uploaded.
func (e *emission) rollback() {
	e.waitSynced()
	for _, o := range append([]*outFile{e.imp, e.del, e.rej}, e.held...) {
		if o != nil {
			o.abort()
		}
	}
	e.imp, e.del, e.rej, e.held = nil, nil, nil, nil
	for _, p := range e.written {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.log.Error("csvfile: cannot remove a file of a failed run; delete it before uploading anything", "file", p, "err", err)
		}
	}
	if len(e.written) > 0 {
		_ = syncDir(e.s.dir)
	}
	e.written = nil
	e.removeMadeDir()
}

// neutralise defuses a spreadsheet formula in a value of a report meant to
// be opened by a person (OWASP "CSV injection"): a leading quote makes the
// spreadsheet show the text instead of evaluating it.
func neutralise(v string) string {
	if v == "" {
		return v
	}
	switch v[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + v
	}
	return v
}

// Check tells whether the outbox exists, or can be created, and is
// writable, by creating and removing a file, and whether header_from is
// readable. It creates no folder.
func (s *Sink) Check(ctx context.Context) (string, error) {
	probe := s.dir
	for {
		fi, err := os.Stat(probe)
		if err == nil {
			if !fi.IsDir() {
				return "", fmt.Errorf("csvfile: outbox %s: %s is not a folder", s.dir, probe)
			}
			break
		}
		// ENOTDIR: a file on the way, found and named by the walk up.
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", fmt.Errorf("csvfile: outbox: %w", err)
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			return "", fmt.Errorf("csvfile: outbox %s: no existing parent folder", s.dir)
		}
		probe = parent
	}
	f, err := os.CreateTemp(probe, ".contactsync-check-*")
	if err != nil {
		return "", fmt.Errorf("csvfile: outbox %s not writable: %w", s.dir, err)
	}
	_ = f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return "", fmt.Errorf("csvfile: outbox %s: %w", s.dir, err)
	}
	desc := fmt.Sprintf("csv outbox %s writable", s.dir)
	if probe != s.dir {
		desc = fmt.Sprintf("csv outbox %s can be created in %s", s.dir, probe)
	}
	if s.src != "" {
		l, err := loadLayout(s.src)
		if err != nil {
			return desc, err
		}
		desc += fmt.Sprintf("; header_from %s: %d columns", s.src, len(l.header))
		if !l.hasUUID() {
			desc += " (no Contact UUID: creates only)"
		}
	}
	return desc, ctx.Err()
}
