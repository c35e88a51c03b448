package connector

import (
	"context"
	"fmt"
)

// ExportRow is one contact of a Control Hub export.
type ExportRow struct {
	UUID    string
	Contact Contact
	Origin  string // "export.csv:12"
}

// ReconcileResult counts what reconcile did.
type ReconcileResult struct {
	Run       Run
	Bound     int // pending creates that got their UUID
	Adopted   int // existing contacts bound to source records
	Known     int // export rows already bound to a record of the job
	Unmatched int // export rows that match nothing: never touched
	Ambiguous int // export rows sharing a match key with another row: not used
}

// Reconcile reads a Control Hub export and binds contact UUIDs to the
// job's contacts: pending creates get the UUID Control Hub gave them, and
// contacts typed in by hand that match a source record are adopted. It
// changes no contact and emits nothing; it is recorded as a run.
func (e *Engine) Reconcile(ctx context.Context, job *Job, rows func(fn func(ExportRow) error) error) (*ReconcileResult, error) {
	run := Run{Job: job.Name, Kind: "reconcile", StartedAt: e.now(), Status: StatusRunning, ConfigHash: job.ConfigHash, Trigger: "cli"}
	id, err := e.Store.StartRun(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job.Name, err)
	}
	run.ID = id
	res := &ReconcileResult{Run: run}
	log := e.logger().With("job", job.Name, "run", id)
	err = e.reconcile(ctx, job, rows, res)
	res.Run.FinishedAt = e.now()
	if err != nil {
		res.Run.Status, res.Run.Reason = StatusFailed, err.Error()
		if ferr := e.Store.FinishRun(context.WithoutCancel(ctx), res.Run); ferr != nil {
			log.Error("could not record the end of the run", "err", ferr)
		}
		return res, fmt.Errorf("job %s: reconcile: %w", job.Name, err)
	}
	log.Info("reconcile finished", "bound", res.Bound, "adopted", res.Adopted, "known", res.Known,
		"unmatched", res.Unmatched, "ambiguous", res.Ambiguous)
	return res, nil
}

// reconcileBind is a bind reconcile found, held until the commit: an
// export of 200,000 contacts may all be adopted, and a ChangeRecord with
// its contact is five times the size.
type reconcileBind struct {
	key, uuid, reason string
	packed            string // packContact of the adopted contact; "" for a pending create
}

func (e *Engine) reconcile(ctx context.Context, job *Job, rows func(fn func(ExportRow) error) error, res *ReconcileResult) error {
	managed := map[string]struct{}{}
	boundUUIDs := map[string]bool{}
	var pending []string
	if err := e.Store.Entries(ctx, job.Name, func(en Entry) error {
		managed[en.Key] = struct{}{}
		switch {
		case en.UUID != "":
			boundUUIDs[en.UUID] = true
		case en.Status == EntryPending:
			pending = append(pending, en.Key)
		}
		return nil
	}); err != nil {
		return err
	}
	m := newMatcher(job.PhoneRegion)
	if err := rows(func(row ExportRow) error {
		switch {
		case row.UUID == "":
		case boundUUIDs[row.UUID]:
			res.Known++
		default:
			m.add(row.UUID, row.Origin, &row.Contact)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("export: %w", err)
	}

	var binds []reconcileBind
	// Pending creates: match what was emitted for them.
	for start := 0; start < len(pending); start += enrichChunk {
		end := min(start+enrichChunk, len(pending))
		stored, err := e.Store.Contacts(ctx, job.Name, pending[start:end])
		if err != nil {
			return err
		}
		for _, key := range pending[start:end] {
			sc := stored[key]
			if sc == nil {
				continue
			}
			if i := m.find(&sc.Contact); i >= 0 {
				m.items[i].used = true
				binds = append(binds, reconcileBind{key: key, uuid: m.items[i].uuid,
					reason: "reconcile: pending create found in the export at " + m.items[i].origin})
				res.Bound++
			}
		}
	}

	// Records not managed yet: adopt the existing contact they match.
	attrs, all := job.Mapping.Attributes()
	var c Contact
	seen := map[string]bool{}
	em := &funcEmitter{record: func(rec *Record) error {
		if _, ok := managed[rec.Key]; ok || seen[rec.Key] {
			return nil
		}
		seen[rec.Key] = true
		if err := job.Mapping.Apply(rec, &c); err != nil {
			return nil
		}
		if i := m.find(&c); i >= 0 {
			m.items[i].used = true
			binds = append(binds, reconcileBind{key: rec.Key, uuid: m.items[i].uuid, packed: m.items[i].packed,
				reason: "reconcile: adopted the existing contact at " + m.items[i].origin})
			res.Adopted++
		}
		return nil
	}}
	if _, err := job.Source.Pull(ctx, PullRequest{Peek: true, Full: true, Attributes: attrs, AllAttributes: all}, em); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	for _, it := range m.items {
		if !it.used {
			res.Unmatched++
		}
	}
	for k := range m.ambiguous {
		_ = k
		res.Ambiguous++
	}
	res.Run.Status = StatusOK
	res.Run.Adopted = res.Bound + res.Adopted
	res.Run.FinishedAt = e.now()
	return e.Store.Commit(ctx, &Commit{
		Run: res.Run,
		Changes: func(yield func(*ChangeRecord) error) error {
			var cr ChangeRecord
			var adopted Contact
			for _, b := range binds {
				cr = ChangeRecord{Action: ActionBind, Key: b.key, UUID: b.uuid, Status: EntryBound, Applied: true, Reason: b.reason}
				if b.packed != "" {
					adopted = unpackContact(b.packed)
					cr.New = &adopted
				}
				if err := yield(&cr); err != nil {
					return err
				}
			}
			return nil
		},
		Rejected: func(func(Rejection) error) error { return nil },
		KeepDays: job.KeepDays,
	})
}

// funcEmitter adapts functions to Emitter; rejections and deletions are
// not interesting to reconcile and preview.
type funcEmitter struct {
	record func(*Record) error
	reject func(key, origin, reason string) error
}

func (f *funcEmitter) Record(r *Record) error { return f.record(r) }
func (f *funcEmitter) Reject(key, origin, reason string) error {
	if f.reject != nil {
		return f.reject(key, origin, reason)
	}
	return nil
}
func (f *funcEmitter) Delete(string, string) error { return nil }
