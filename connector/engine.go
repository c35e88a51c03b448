package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

// Job is a configured job, ready to run.
type Job struct {
	Name    string
	Source  Source
	Sink    Sink
	Mapping *Mapping
	// PhoneRegion is the mapping's phone_region, used to compare numbers
	// when matching existing contacts.
	PhoneRegion string
	Safety      Safety
	ConfigHash  string // of the configuration the job came from, for the audit
	KeepDays    int    // audit retention
}

// RunOptions are the switches of one run.
type RunOptions struct {
	DryRun       bool   // plan only: nothing emitted, state untouched (the run is recorded as dry_run)
	Full         bool   // ignore the source cursor
	AllowDeletes bool   // exceed the deletion guard this once (sync --allow-deletes)
	Trigger      string // "cli", "schedule": recorded in the audit
	// Collect keeps the plan's changes in Result.Changes (for plan output).
	Collect bool
}

// PlannedChange is one change as shown to an operator.
type PlannedChange struct {
	Action      Action        `json:"action"`
	Key         string        `json:"key"`
	UUID        string        `json:"contact_uuid"`
	DisplayName string        `json:"display_name"`
	Fields      []FieldChange `json:"-"`
	Held        string        `json:"held,omitempty"` // why it is not emitted
}

// Result is what a run did.
type Result struct {
	Run      Run
	Changes  []PlannedChange // with RunOptions.Collect
	Rejected []Rejection     // the first MaxReportedRejections
}

// MaxReportedRejections bounds Result.Rejected; the audit keeps them all.
const MaxReportedRejections = 1000

// ErrBlocked is returned (wrapped) when a safety guard blocked a run.
var ErrBlocked = errors.New("blocked by a safety guard")

// OutputRemover is implemented by sinks that write files, so that the
// output of a run that could not be committed (or was interrupted by a
// crash) never stays visible.
type OutputRemover interface {
	RemoveOutput(job string, runID int64) ([]string, error)
}

// Engine runs jobs against a store.
type Engine struct {
	Store    Store
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now
	SpoolDir string           // "" : os.TempDir()
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Run runs a job once. The returned Result is valid even when err is not
// nil (a failed or blocked run is recorded and described).
func (e *Engine) Run(ctx context.Context, job *Job, opts RunOptions) (*Result, error) {
	kind := "sync"
	if opts.DryRun {
		kind = StatusDryRun
	}
	run := Run{Job: job.Name, Kind: kind, StartedAt: e.now(), Status: StatusRunning, ConfigHash: job.ConfigHash, Trigger: opts.Trigger}
	id, err := e.Store.StartRun(ctx, run)
	if err != nil {
		return &Result{Run: run}, fmt.Errorf("job %s: %w", job.Name, err)
	}
	run.ID = id
	log := e.logger().With("job", job.Name, "run", id)
	r := &runner{e: e, job: job, opts: opts, log: log, res: &Result{Run: run}}
	err = r.run(ctx)
	res := r.res
	res.Run.FinishedAt = e.now()
	switch {
	case err == nil:
	case errors.Is(err, ErrBlocked):
		res.Run.Status = StatusBlocked
	default:
		res.Run.Status = StatusFailed
		res.Run.Reason = err.Error()
		if rm, ok := job.Sink.(OutputRemover); ok && !opts.DryRun {
			if _, rerr := rm.RemoveOutput(job.Name, id); rerr != nil {
				log.Error("could not remove the output of the failed run", "err", rerr)
			}
		}
	}
	if res.Run.Status != StatusOK {
		// A context already cancelled must not keep the failure unrecorded.
		fctx := context.WithoutCancel(ctx)
		if ferr := e.Store.FinishRun(fctx, res.Run); ferr != nil {
			log.Error("could not record the end of the run", "err", ferr)
			if err == nil {
				err = ferr
			}
		}
	}
	c := res.Run.Counts
	log.Info("run finished", "status", res.Run.Status, "created", c.Created, "updated", c.Updated,
		"deleted", c.Deleted, "unchanged", c.Unchanged, "rejected", c.Rejected, "waiting", c.Waiting,
		"source_records", c.Source, "duration", res.Run.FinishedAt.Sub(res.Run.StartedAt).Round(time.Millisecond).String(),
		"reason", res.Run.Reason)
	if err != nil {
		return res, fmt.Errorf("job %s: %w", job.Name, err)
	}
	return res, nil
}

// runner is the state of one run.
type runner struct {
	e    *Engine
	job  *Job
	opts RunOptions
	log  *slog.Logger
	res  *Result

	sp       *spool
	mapper   *mapper // nil: records are mapped inline
	index    entryIndex
	fresh    freshKeys // keys the state does not hold; the others' marks live in index
	counts   Counts
	complete bool
	contact  Contact
	managed  int
	// adopted holds pointers: a lookup that copied an adoption out (a
	// Contact) would cost an allocation per record of every pass.
	adopted map[string]*adoption
	// rec and cr are reused for every change spooled or translated, so
	// that neither escapes to the heap once per record: the spool copies
	// rec's fields, and a store must not keep a record after its yield.
	rec      spoolRec
	cr       ChangeRecord
	outcomes *outcomes
	// heldDeletes counts deletes that safety.allow held back.
	heldDeletes int
	// stg stages the run's state as it goes; nil: it is committed at the
	// end.
	stg *staging
	// out writes the staged creates into the sink's output during the
	// pull; nil: Apply writes everything.
	out *outStream
	// indexLoaded is closed when the loader goroutine has filled index
	// (nil: loaded before the pull, or already awaited); indexErr is why it
	// failed. See awaitIndex.
	indexLoaded chan struct{}
	indexErr    error
	// keyed: the index holds only the entries looked up so far
	// (engine_keyed.go); nil: it holds every entry, or is loading them.
	keyed *keyedIndex
}

// reasonGone is the reason of a delete whose record left the source.
const reasonGone = "gone from the source"

// markOf returns what the run decided for key, if anything.
func (r *runner) markOf(key string) (mark, bool) {
	if en := r.index.lookup(key); en != nil {
		return en.mark(), en.seen()
	}
	if m := r.fresh.lookup(key); m != nil {
		return *m, true
	}
	return mark{}, false
}

// setMark records what the run decided for key, whose stored entry is en
// (nil if none). A key the state does not hold is copied into the fresh
// keys' table, never kept as given: it must not pin the source's row
// buffer (a CSV row is one string).
func (r *runner) setMark(key string, en *indexed, m mark) error {
	if en != nil {
		en.setMark(m)
		return nil
	}
	return r.fresh.put(key, m)
}

// mark is what a pull decided for a key.
type mark struct {
	seq int32
	cat uint8
	seg int8
	// staged: a create of a fresh key, staged during the pull.
	staged bool
}

const (
	// catUnseen: nothing decided yet (only in indexed).
	catUnseen uint8 = iota
	catNone
	catUnchanged
	catCreate
	catUpdate
	catWait
	catDelete
	catRejected
	catHeldDelete
	// catTouch is unchanged, with the entry's source hash to refresh.
	catTouch
)

func (r *runner) run(ctx context.Context) error {
	sp, err := newSpool(r.e.SpoolDir)
	if err != nil {
		return err
	}
	defer sp.close()
	r.sp = sp
	sp.fill = r.keepStaged
	var cursor []byte
	if !r.opts.Full {
		if cursor, err = r.e.Store.Cursor(ctx, r.job.Name); err != nil {
			return err
		}
	}
	attrs, all := r.job.Mapping.Attributes()
	req := PullRequest{Cursor: cursor, Full: r.opts.Full, Attributes: attrs, AllAttributes: all}
	// Never leave while a loader still writes the runner.
	defer r.awaitIndex()
	switch {
	case r.startKeyed(ctx, req):
	case runtime.GOMAXPROCS(0) > 1 && heapHook == nil:
		// The index loads while the source connects and hands over its
		// first records, which the mapper holds until it is complete: at
		// 100,000 entries the load takes about as long as the directory
		// needs for 15,000 of them.
		r.indexLoaded = make(chan struct{})
		go func() {
			defer close(r.indexLoaded)
			r.indexErr = r.loadIndex(ctx)
		}()
	default:
		if err := r.loadIndex(ctx); err != nil {
			return err
		}
		if heapHook != nil {
			heapHook("index")
		}
	}
	if r.stg, err = r.startStaging(ctx); err != nil {
		return err
	}
	if r.stg != nil {
		// Before Run records a failure: the stage holds the writer.
		defer r.stg.close(r.log)
		r.openStream(ctx)
		// Every path that does not reach Apply removes what was streamed.
		defer r.abandonStream()
	}
	if w := runtime.GOMAXPROCS(0); w > 1 {
		r.mapper = newMapper(r.job.Mapping, &r.index, w)
		r.mapper.holdDir = r.e.SpoolDir
		r.mapper.encode = r.stg != nil && r.allowed(ActionCreate)
		defer r.mapper.stop()
	}
	pr, err := r.job.Source.Pull(ctx, req, (*emitter)(r))
	if err == nil {
		err = r.flushMapped()
	}
	if ierr := r.awaitIndex(); ierr != nil {
		// The source saw this failure as its emitter's: it is the state's.
		return ierr
	}
	if heapHook != nil {
		heapHook("pull")
	}
	r.res.Run.Source = pr.Identity
	if err != nil {
		r.res.Run.Counts = r.counts
		return fmt.Errorf("source: %w", err)
	}
	r.complete = pr.Complete && !pr.NoChange
	if pr.NoChange {
		r.log.Info("nothing new from the source", "source", pr.Identity)
	}
	if err := r.finishKeyed(ctx); err != nil {
		return err
	}
	if err := r.planRest(ctx); err != nil {
		return err
	}
	if err := r.enrich(ctx); err != nil {
		return err
	}
	r.res.Run.Counts = r.counts

	approved, err := r.e.Store.Approved(ctx, r.job.Name)
	if err != nil {
		return err
	}
	if r.counts.Deleted > 0 {
		if r.managed, err = r.managedCount(ctx); err != nil {
			return err
		}
	}
	if why := r.job.Safety.guard(r.counts.Deleted, r.managed, r.counts.Source, pr.Complete && !pr.NoChange); why != "" {
		switch {
		case r.opts.AllowDeletes:
			r.log.Warn("deletion guard exceeded, allowed by --allow-deletes", "reason", why)
		case approved && !r.opts.DryRun:
			r.log.Warn("deletion guard exceeded, allowed by an approval", "reason", why)
		case r.opts.DryRun:
			r.res.Run.Reason = "would be blocked: " + why
		default:
			r.res.Run.Reason = why
			r.log.Warn("run blocked by the deletion guard; run `contactsync approve --job "+r.job.Name+"` or fix the source", "reason", why)
			r.collectRejected()
			return ErrBlocked
		}
	}

	if ad, ok := r.job.Sink.(Adopter); ok && r.counts.Created > 0 {
		empty, err := r.stateEmpty(ctx)
		if err != nil {
			return err
		}
		if empty {
			if err := r.adopt(ctx, ad); err != nil {
				return err
			}
		}
	}
	plan := &enginePlan{r: r}
	if r.opts.Collect {
		if err := r.collect(ctx, plan); err != nil {
			return err
		}
	}
	if r.opts.DryRun {
		r.res.Run.Status = StatusDryRun
		r.collectRejected()
		return nil
	}

	r.outcomes = &outcomes{bound: map[string]string{}, failed: map[string]string{}}
	// The stream first: when it failed, the plan needs the creates it
	// took back from the stage, before the stage takes the rest.
	out := r.finishStream()
	if out == nil && r.stg != nil {
		if err := r.keepStaged(segCreate); err != nil {
			return err
		}
	}
	if r.stg != nil {
		if err := r.stg.finish(r); err != nil {
			return err
		}
	}
	var ar ApplyResult
	if out != nil {
		ar, err = out.Apply(ctx, &enginePlan{r: r, skipStaged: true}, r.outcomes)
	} else {
		ar, err = r.job.Sink.Apply(ctx, r.runInfo(), plan, r.outcomes)
	}
	r.res.Run.Files = ar.Files
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	return r.commit(ctx, pr, approved, r.stg)
}

// emitter is the runner as the source sees it.
type emitter runner

func (em *emitter) Record(rec *Record) error {
	r := (*runner)(em)
	if r.mapper == nil {
		if err := r.awaitIndex(); err != nil {
			return err
		}
		if r.keyed != nil {
			if err := r.lookUp([]string{rec.Key}); err != nil {
				return err
			}
		}
		var it mapItem
		it.rec = *rec
		mapOne(r.job.Mapping, &r.index, &it, &r.contact, false)
		return r.decide(rec.Key, rec.Origin, &r.contact, &it)
	}
	if !r.mapper.add(rec) {
		return nil
	}
	return r.cycle()
}

// unchangedSource reports whether a record whose source hash is src can be
// taken as unchanged without mapping it: the entry's content was emitted
// from a record with the same source hash through the same mapping, and no
// other content waits to be emitted (a held, failed or waiting change must
// be mapped and planned again). It only reads what the pull never writes.
func (en *indexed) unchangedSource(src Hash) bool {
	return en != nil && !en.src.IsZero() && en.src == src && !en.desired &&
		(en.status == stBound || en.status == stPending)
}

// heapHook, when set (by benchmarks, before a run), is called once the
// index is loaded ("index") and once the pull is over ("pull"), while
// the run's structures are live, to measure them.
var heapHook func(stage string)

// mappedHook, when set (by tests, before a run), is called for every record
// the engine maps.
var mappedHook func()

// mapOne maps and hashes one record, unless its source hash says that it is
// unchanged. It runs on the mapping workers. With encode, the contact of a
// key the state does not hold is also encoded for the state, where a staged
// create stores it.
func mapOne(m *Mapping, index *entryIndex, it *mapItem, c *Contact, encode bool) {
	it.src = m.SourceHash(&it.rec)
	it.en = index.lookup(it.rec.Key)
	it.json = nil
	if it.en.unchangedSource(it.src) {
		it.skip, it.err, it.hash = true, nil, Hash{}
		return
	}
	it.skip = false
	if mappedHook != nil {
		mappedHook()
	}
	it.err = m.Apply(&it.rec, c)
	if it.err == nil {
		it.hash = c.Hash()
		if it.en == nil && encode {
			it.json = c.Marshal()
		}
	}
}

// decide plans one mapped record, in the order the source handed the
// records over: it.err is the mapping's rejection, it.skip says the record
// was not mapped because its source hash is the stored one.
func (r *runner) decide(key, origin string, c *Contact, it *mapItem) error {
	h, err := it.hash, it.err
	r.counts.Source++
	en := it.en
	var m mark
	var ok bool
	if en != nil {
		m, ok = en.mark(), en.seen()
	} else if p := r.fresh.lookup(key); p != nil {
		m, ok = *p, true
	}
	if ok {
		if m.cat == catRejected {
			return nil
		}
		r.undo(key, m)
	}
	if err != nil {
		return r.reject(key, en, origin, err.Error())
	}
	switch {
	case it.skip:
		en.setMark(mark{cat: catUnchanged})
		r.counts.Unchanged++
		return nil
	case en == nil && r.stg != nil && r.allowed(ActionCreate):
		// Staged first: the stage it opens decides whether the spool
		// may skip the create (see spoolChange).
		if err := r.stg.create(key, c, it.src, h, it.json); err != nil {
			return err
		}
		r.rec = spoolRec{action: ActionCreate, key: key, flags: flagStaged, new: *c, src: it.src}
		if err := r.spoolChange(key, en, catCreate, segCreate, &r.rec); err != nil {
			return err
		}
		if r.out != nil {
			r.streamCreate(key, c)
		}
		return nil
	case en == nil || en.status == stFailed:
		r.rec = spoolRec{action: ActionCreate, key: key, new: *c, src: it.src}
		return r.spoolChange(key, en, catCreate, segCreate, &r.rec)
	case h == en.Hash && en.src != it.src && !en.desired:
		// The same contact from a record that hashes differently (the
		// mapping changed, or a column it does not read): store the new
		// source hash so that the next run skips the mapping.
		seq, err := r.sp.write(segTouch, &spoolRec{action: ActionTouch, key: key, src: it.src})
		if err != nil {
			return err
		}
		en.setMark(mark{cat: catTouch, seg: segTouch, seq: seq})
		r.counts.Unchanged++
		return nil
	case h == en.Hash:
		en.setMark(mark{cat: catUnchanged})
		r.counts.Unchanged++
		return nil
	case en.status == stPending:
		r.rec = spoolRec{action: ActionUpdate, key: key, flags: flagHeld,
			reason: "waiting for the contact's UUID (run reconcile with a Control Hub export)", new: *c}
		return r.spoolChange(key, en, catWait, segRaw, &r.rec)
	default:
		r.rec = spoolRec{action: ActionUpdate, key: key, new: *c, src: it.src}
		return r.spoolChange(key, en, catUpdate, segRaw, &r.rec)
	}
}

func (em *emitter) Reject(key, origin, reason string) error {
	r := (*runner)(em)
	if err := r.flushMapped(); err != nil {
		return err
	}
	if r.keyed != nil {
		if err := r.lookUp([]string{key}); err != nil {
			return err
		}
	}
	// Every call is a rejected row worth reporting, even for a key already
	// rejected (a source may report each row of a duplicate).
	if m, ok := r.markOf(key); ok {
		r.undo(key, m)
	}
	return r.reject(key, r.index.lookup(key), origin, reason)
}

func (em *emitter) Delete(key, origin string) error {
	r := (*runner)(em)
	if err := r.flushMapped(); err != nil {
		return err
	}
	if r.keyed != nil {
		if err := r.lookUp([]string{key}); err != nil {
			return err
		}
	}
	if m, ok := r.markOf(key); ok {
		if m.cat == catRejected {
			return nil
		}
		r.undo(key, m)
	}
	en := r.index.lookup(key)
	if en == nil {
		return r.setMark(key, nil, mark{cat: catNone})
	}
	// The same reason as a complete pull's, so that an incremental run
	// writes the very files a full pull would.
	r.log.Debug("deleted in the source", "key", key, "origin", origin)
	return r.spoolDelete(key, en, reasonGone, catDelete)
}

func (r *runner) reject(key string, en *indexed, origin, reason string) error {
	if _, err := r.sp.write(segReject, &spoolRec{action: ActionCreate, key: key, uuid: origin, reason: reason}); err != nil {
		return err
	}
	r.counts.Rejected++
	return r.setMark(key, en, mark{cat: catRejected})
}

// undo forgets what an earlier record of the same key decided.
func (r *runner) undo(key string, m mark) {
	if m.staged {
		r.stg.revert(key)
		// The create leaves the streamed sequence.
		r.abandonStream()
	}
	switch m.cat {
	case catUnchanged:
		r.counts.Unchanged--
		return
	case catTouch:
		r.counts.Unchanged--
	case catNone, catRejected:
		return
	case catCreate:
		r.counts.Created--
	case catUpdate:
		r.counts.Updated--
	case catWait:
		r.counts.Waiting--
	case catDelete:
		r.counts.Deleted--
	case catHeldDelete:
		r.counts.Waiting--
		r.heldDeletes--
		return
	}
	r.sp.supersede(int(m.seg), m.seq)
}

func (r *runner) allowed(a Action) bool { return r.job.Safety.Allow[a] }

func (r *runner) spoolChange(key string, en *indexed, cat uint8, seg int, rec *spoolRec) error {
	if seg == segCreate && rec.flags&flagStaged == 0 {
		// A create among the streamed ones that the stream does not get.
		r.abandonStream()
	}
	if cat != catWait && !r.allowed(rec.action) {
		rec.flags |= flagHeld
		rec.reason = "held back: safety.allow does not list " + string(rec.action)
		cat = catWait
	}
	var seq int32
	skipped := false
	if rec.flags&flagStaged != 0 && r.out != nil && r.stg.recall {
		// The stage and the output stream hold it: the spool needs it
		// only if the stream is given up, and then gets it from the
		// stage (keepStaged).
		seq, skipped = r.sp.skip(seg)
	}
	if !skipped {
		var err error
		if seq, err = r.sp.write(seg, rec); err != nil {
			return err
		}
	}
	if err := r.setMark(key, en, mark{cat: cat, seg: int8(seg), seq: seq, staged: rec.flags&flagStaged != 0}); err != nil {
		return err
	}
	switch cat {
	case catCreate:
		r.counts.Created++
	case catUpdate:
		r.counts.Updated++
	case catWait:
		r.counts.Waiting++
	}
	return nil
}

func (r *runner) spoolDelete(key string, en *indexed, reason string, cat uint8) error {
	rec := &spoolRec{action: ActionDelete, key: key, reason: reason}
	if en.status == stFailed {
		// Never created in Webex: forget it without showing it to the sink.
		rec.flags |= flagSilent
		seq, err := r.sp.write(segRaw, rec)
		en.setMark(mark{cat: catNone, seg: segRaw, seq: seq})
		return err
	}
	if !r.allowed(ActionDelete) {
		en.setMark(mark{cat: catHeldDelete})
		r.counts.Waiting++
		r.heldDeletes++
		return nil
	}
	seq, err := r.sp.write(segRaw, rec)
	if err != nil {
		return err
	}
	en.setMark(mark{cat: cat, seg: segRaw, seq: seq})
	r.counts.Deleted++
	return nil
}

// planRest adds what the pull implies beyond the records it handed over:
// deletes for keys gone from a complete pull, and changes that waited
// (failed on an earlier run, or held until a UUID came).
func (r *runner) planRest(ctx context.Context) error {
	for id := range r.index.len() {
		if id%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		en := r.index.vals.at(id)
		if en.seen() {
			continue
		}
		key := r.index.keys.key(id)
		switch {
		case r.complete:
			if err := r.spoolDelete(key, en, reasonGone, catDelete); err != nil {
				return err
			}
		case !en.desired:
		case en.status == stFailed:
			if err := r.spoolChange(key, en, catCreate, segRaw, &spoolRec{action: ActionCreate, key: key, flags: flagFromDesired}); err != nil {
				return err
			}
		case en.status == stBound:
			if err := r.spoolChange(key, en, catUpdate, segRaw, &spoolRec{action: ActionUpdate, key: key, flags: flagFromDesired}); err != nil {
				return err
			}
		}
	}
	return nil
}

// enrichChunk is how many stored contacts are loaded at once.
const enrichChunk = 500

// enrich loads the stored content of updates and deletes, chunk by chunk,
// and moves them to their segments.
func (r *runner) enrich(ctx context.Context) error {
	var batch []spoolRec
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		keys := make([]string, len(batch))
		for i := range batch {
			keys[i] = batch[i].key
		}
		stored, err := r.e.Store.Contacts(ctx, r.job.Name, keys)
		if err != nil {
			return err
		}
		for i := range batch {
			rec := &batch[i]
			sc := stored[rec.key]
			if sc == nil {
				return fmt.Errorf("state: no stored contact for key %q", rec.key)
			}
			if rec.flags&flagFromDesired != 0 {
				rec.new = sc.DesiredContact
			}
			// The index keeps no UUIDs. An update of a pending contact
			// waits for its UUID, and goes without one.
			if rec.action == ActionDelete || (rec.action == ActionUpdate && sc.Status != EntryPending) {
				rec.uuid = sc.UUID
			}
			seg := segUpdate
			switch rec.action {
			case ActionCreate:
				seg = segCreate
			case ActionDelete:
				seg = segDelete
				rec.new = sc.Contact
			case ActionUpdate:
				rec.old, rec.hasOld = sc.Contact, true
			}
			if _, err := r.sp.write(seg, rec); err != nil {
				return err
			}
		}
		batch = batch[:0]
		return nil
	}
	err := r.sp.each(segRaw, func(rec *spoolRec) error {
		batch = append(batch, *rec)
		if len(batch) == enrichChunk {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	return r.sp.reset(segRaw)
}

func (r *runner) collectRejected() {
	_ = r.sp.each(segReject, func(rec *spoolRec) error {
		if len(r.res.Rejected) < MaxReportedRejections {
			r.res.Rejected = append(r.res.Rejected, Rejection{Key: rec.key, Origin: rec.uuid, Reason: rec.reason})
		}
		return nil
	})
}

func (r *runner) collect(ctx context.Context, plan *enginePlan) error {
	for _, seg := range []int{segCreate, segUpdate, segDelete} {
		err := r.sp.each(seg, func(rec *spoolRec) error {
			if rec.flags&flagSilent != 0 {
				return nil
			}
			pc := PlannedChange{Action: rec.action, Key: rec.key, UUID: rec.uuid, DisplayName: rec.new[DisplayName]}
			if rec.flags&flagHeld != 0 {
				pc.Held = rec.reason
			}
			old := &Contact{}
			if rec.hasOld {
				old = &rec.old
			}
			if a, ok := r.adopted[rec.key]; ok && rec.action == ActionCreate {
				pc.UUID, old = a.uuid, &a.contact
				pc.Action = ActionUpdate
				if a.contact == rec.new {
					pc.Action = ActionBind
				}
			}
			if pc.Action != ActionDelete {
				for _, f := range Diff(old, &rec.new) {
					pc.Fields = append(pc.Fields, FieldChange{Field: f, Old: old[f], New: rec.new[f]})
				}
			}
			r.res.Changes = append(r.res.Changes, pc)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
