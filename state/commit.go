package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// ctxCheckEvery is how many changes Commit applies between two looks at
// its context. Statements inside the loop run on a context without
// cancellation, because the driver starts a goroutine per statement to
// watch a cancellable one.
const ctxCheckEvery = 1024

// Commit applies a run's changes and records the run, in one transaction:
// the entries, the audit rows of every change and rejection, the cursor,
// the approval, the run row, the pruning of old run detail and the clearing
// of the job's journal are all stored, or none of them is.
//
// A Run with ID 0 (a run that never went through StartRun) is inserted, and
// c.Run.ID is set to its id.
//
// The Changes and Rejected iterators run inside the transaction, which
// holds the only writer connection: they may read the DB, but a write from
// them (Intend, Approve, StartRun) would wait for the transaction forever.
func (d *DB) Commit(ctx context.Context, c *connector.Commit) (err error) {
	if c == nil {
		return errors.New("state: commit: nothing to commit")
	}
	job := c.Run.Job
	fail := func(err error) error {
		return fmt.Errorf("state: commit run %d of job %q: %w", c.Run.ID, job, err)
	}
	if job == "" {
		return fail(errors.New("no job name"))
	}
	if !finalStatus(c.Run.Status) {
		return fail(fmt.Errorf("status %q is not a final run status", c.Run.Status))
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	newRun := c.Run.ID == 0
	defer func() {
		if err != nil {
			_ = tx.Rollback()
			if newRun {
				c.Run.ID = 0
			}
		}
	}()
	if newRun {
		if c.Run.ID, err = d.insertRun(ctx, tx, &c.Run, connector.StatusRunning); err != nil {
			return fail(err)
		}
	}
	st := time.Now()
	n, err := d.applyChanges(ctx, tx, c)
	if err != nil {
		return fail(err)
	}
	nrej, err := insertRejections(ctx, tx, c)
	if err != nil {
		return fail(err)
	}
	if c.SetCursor {
		var cur any
		if c.Cursor != nil {
			cur = c.Cursor
		}
		if _, err = tx.ExecContext(ctx, `INSERT INTO jobs (job, cursor) VALUES (?, ?)
			ON CONFLICT (job) DO UPDATE SET cursor = excluded.cursor`, job, cur); err != nil {
			return fail(fmt.Errorf("cursor: %w", err))
		}
	}
	if c.ConsumeApproval {
		if _, err = tx.ExecContext(ctx, `UPDATE approvals SET used_by_run = ? WHERE job = ? AND used_by_run IS NULL`,
			c.Run.ID, job); err != nil {
			return fail(fmt.Errorf("approval: %w", err))
		}
	}
	if err = d.updateRun(ctx, tx, &c.Run); err != nil {
		return fail(err)
	}
	// Retention counts from the committing run's start, so that the
	// engine's clock (a fake one in tests) decides, not this package's.
	ref := c.Run.StartedAt
	if ref.IsZero() {
		ref = d.now()
	}
	pruned, err := d.prune(ctx, tx, c.KeepDays, ref)
	if err != nil {
		return fail(err)
	}
	if _, err = tx.ExecContext(ctx, `DELETE FROM journal WHERE job = ?`, job); err != nil {
		return fail(fmt.Errorf("clear journal: %w", err))
	}
	if err = tx.Commit(); err != nil {
		return fail(err)
	}
	d.log.Debug("state: run committed", "run", c.Run.ID, "job", job, "changes", n, "rejected", nrej,
		"pruned_rows", pruned, "duration", time.Since(st))
	return nil
}

// applier holds the statements that apply one change, prepared once per
// commit.
type applier struct {
	ctx     context.Context
	job     string
	runID   int64
	create  *sql.Stmt // applied create: emitted content := New
	update  *sql.Stmt // applied update: emitted content := New
	desired *sql.Stmt // not applied: desired content := New
	bind    *sql.Stmt
	touch   *sql.Stmt // only the source hash, no audit row
	remove  *sql.Stmt
	get     *sql.Stmt
	audit   *sql.Stmt
	// auditMany inserts auditBatch audit rows at once: a row per statement
	// cost as much in database/sql and cgo overhead as SQLite's own work.
	auditMany *sql.Stmt
	pending   []any // arguments of audit rows not inserted yet
}

// auditBatch is how many audit rows one statement inserts (9 parameters
// each, well under SQLite's limit).
const auditBatch = 64

const auditColumns = `INSERT INTO changes (run_id, action, key, uuid, status, applied, reason, old, new) VALUES `

func (d *DB) applyChanges(ctx context.Context, tx *sql.Tx, c *connector.Commit) (int, error) {
	if c.Changes == nil {
		return 0, nil
	}
	a := &applier{ctx: context.WithoutCancel(ctx), job: c.Run.Job, runID: c.Run.ID}
	prep := []struct {
		st **sql.Stmt
		q  string
	}{
		// An applied create is a new Webex contact: its UUID, or none
		// while pending, replaces whatever the entry held (a failed create).
		{&a.create, `INSERT INTO entries (job, key, uuid, status, hash, contact, source_hash) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (job, key) DO UPDATE SET uuid = excluded.uuid, status = excluded.status,
				hash = excluded.hash, contact = excluded.contact, desired_hash = NULL, desired = NULL,
				source_hash = excluded.source_hash`},
		// An update keeps the entry's UUID and status unless it learns a UUID.
		{&a.update, `INSERT INTO entries (job, key, uuid, status, hash, contact, source_hash) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (job, key) DO UPDATE SET
				uuid = CASE WHEN excluded.uuid <> '' THEN excluded.uuid ELSE entries.uuid END,
				status = CASE WHEN excluded.uuid <> '' OR entries.uuid <> '' THEN 'bound' ELSE entries.status END,
				hash = excluded.hash, contact = excluded.contact, desired_hash = NULL, desired = NULL,
				source_hash = excluded.source_hash
			RETURNING uuid, status`},
		// Content waiting to be emitted makes the stored source hash
		// meaningless: the record must be mapped and planned again.
		{&a.desired, `INSERT INTO entries (job, key, uuid, status, desired_hash, desired) VALUES (?, ?, ?, 'failed', ?, ?)
			ON CONFLICT (job, key) DO UPDATE SET desired_hash = excluded.desired_hash, desired = excluded.desired,
				source_hash = NULL
			RETURNING uuid`},
		// A bind that sets the content sets the source hash it came from
		// (NULL: unknown); one that keeps the content keeps it.
		{&a.bind, `INSERT INTO entries (job, key, uuid, status, hash, contact, source_hash) VALUES (?1, ?2, ?3, 'bound', ?4, ?5, ?7)
			ON CONFLICT (job, key) DO UPDATE SET uuid = excluded.uuid, status = 'bound',
				hash = CASE WHEN ?6 THEN excluded.hash ELSE entries.hash END,
				contact = CASE WHEN ?6 THEN excluded.contact ELSE entries.contact END,
				source_hash = CASE WHEN ?6 THEN excluded.source_hash ELSE entries.source_hash END`},
		{&a.touch, `UPDATE entries SET source_hash = ? WHERE job = ? AND key = ?`},
		{&a.remove, `DELETE FROM entries WHERE job = ? AND key = ? RETURNING uuid, contact`},
		{&a.get, `SELECT contact FROM entries WHERE job = ? AND key = ?`},
		{&a.audit, auditColumns + `(?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&a.auditMany, auditColumns + `(?, ?, ?, ?, ?, ?, ?, ?, ?)` + strings.Repeat(`, (?, ?, ?, ?, ?, ?, ?, ?, ?)`, auditBatch-1)},
	}
	for _, p := range prep {
		st, err := tx.PrepareContext(ctx, p.q)
		if err != nil {
			return 0, fmt.Errorf("prepare: %w", err)
		}
		defer st.Close()
		*p.st = st
	}
	n := 0
	var applyErr error
	err := c.Changes(func(rec *connector.ChangeRecord) error {
		if n%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				applyErr = err
				return err
			}
		}
		n++
		if err := a.apply(rec); err != nil {
			applyErr = fmt.Errorf("change %d (%s of key %q): %w", n, rec.Action, rec.Key, err)
			return applyErr
		}
		return nil
	})
	if applyErr != nil {
		return n, applyErr
	}
	if err != nil {
		return n, fmt.Errorf("changes after %d: %w", n, err)
	}
	if err := a.flushAudit(); err != nil {
		return n, fmt.Errorf("audit of the last %d changes: %w", n%auditBatch, err)
	}
	return n, nil
}

// flushAudit inserts the audit rows not inserted yet, one by one.
func (a *applier) flushAudit() error {
	for len(a.pending) > 0 {
		if _, err := a.audit.ExecContext(a.ctx, a.pending[:9]...); err != nil {
			return err
		}
		a.pending = a.pending[9:]
	}
	a.pending = nil
	return nil
}

// apply stores one change in the entries and in the audit.
func (a *applier) apply(rec *connector.ChangeRecord) error {
	if rec.Key == "" {
		return errors.New("no key")
	}
	// The new content is encoded and hashed once, for the entry and the
	// audit row.
	var newJSON any
	var newHash []byte
	if rec.New != nil {
		newJSON = string(rec.New.Marshal())
		h := rec.New.Hash()
		newHash = h[:]
	}
	uuid, status := rec.UUID, ""
	old := rec.Old
	var err error
	switch {
	case rec.Action == connector.ActionTouch:
		if rec.SourceHash.IsZero() {
			return errors.New("touch without a source hash")
		}
		_, err = a.touch.ExecContext(a.ctx, hashValue(rec.SourceHash), a.job, rec.Key)
		return err

	case rec.Action != connector.ActionCreate && rec.Action != connector.ActionUpdate &&
		rec.Action != connector.ActionDelete && rec.Action != connector.ActionBind:
		return fmt.Errorf("unknown action %q", rec.Action)

	case !rec.Applied:
		// The entry keeps what was last emitted; the new content waits.
		status = rec.Status
		if status == "" {
			status = connector.EntryFailed
		}
		if rec.New != nil && (rec.Action == connector.ActionCreate || rec.Action == connector.ActionUpdate) {
			var got string
			err = a.desired.QueryRowContext(a.ctx, a.job, rec.Key, rec.UUID, newHash, newJSON).Scan(&got)
			if uuid == "" {
				uuid = got
			}
		}

	case rec.Action == connector.ActionCreate || rec.Action == connector.ActionUpdate:
		if rec.New == nil {
			return errors.New("applied without new content")
		}
		if old == nil && rec.Action == connector.ActionUpdate {
			if old, err = a.stored(rec.Key); err != nil {
				return err
			}
		}
		status = connector.EntryPending
		if rec.UUID != "" {
			status = connector.EntryBound
		}
		if rec.Action == connector.ActionCreate {
			_, err = a.create.ExecContext(a.ctx, a.job, rec.Key, rec.UUID, status, newHash, newJSON, hashValue(rec.SourceHash))
		} else {
			err = a.update.QueryRowContext(a.ctx, a.job, rec.Key, rec.UUID, status, newHash, newJSON, hashValue(rec.SourceHash)).Scan(&uuid, &status)
		}

	case rec.Action == connector.ActionDelete:
		status = "deleted"
		var got string
		var stored []byte
		err = a.remove.QueryRowContext(a.ctx, a.job, rec.Key).Scan(&got, &stored)
		if errors.Is(err, sql.ErrNoRows) {
			err = nil // already gone: the audit still records the delete
		}
		if uuid == "" {
			uuid = got
		}
		if old == nil && err == nil {
			old, err = scanContact(stored)
		}

	case rec.Action == connector.ActionBind:
		if rec.UUID == "" {
			return errors.New("bind without a UUID")
		}
		if old == nil {
			if old, err = a.stored(rec.Key); err != nil {
				return err
			}
		}
		status = connector.EntryBound
		_, err = a.bind.ExecContext(a.ctx, a.job, rec.Key, rec.UUID, newHash, newJSON, rec.New != nil, hashValue(rec.SourceHash))
	}
	if err != nil {
		return err
	}
	a.pending = append(a.pending, a.runID, string(rec.Action), rec.Key, uuid, status, rec.Applied,
		rec.Reason, contactValue(old), newJSON)
	if len(a.pending) < 9*auditBatch {
		return nil
	}
	if _, err = a.auditMany.ExecContext(a.ctx, a.pending...); err != nil {
		return fmt.Errorf("audit of the last %d changes: %w", auditBatch, err)
	}
	a.pending = a.pending[:0]
	return nil
}

// stored returns an entry's last emitted content, so that the audit shows
// the old values of a change whose caller did not pass them.
func (a *applier) stored(key string) (*connector.Contact, error) {
	var b []byte
	err := a.get.QueryRowContext(a.ctx, a.job, key).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return scanContact(b)
}

func insertRejections(ctx context.Context, tx *sql.Tx, c *connector.Commit) (int, error) {
	if c.Rejected == nil {
		return 0, nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO rejections (run_id, key, origin, reason) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return 0, fmt.Errorf("prepare: %w", err)
	}
	defer st.Close()
	ectx := context.WithoutCancel(ctx)
	n := 0
	var insErr error
	err = c.Rejected(func(r connector.Rejection) error {
		if n%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				insErr = err
				return err
			}
		}
		n++
		if _, err := st.ExecContext(ectx, c.Run.ID, r.Key, r.Origin, r.Reason); err != nil {
			insErr = fmt.Errorf("rejection %d (key %q): %w", n, r.Key, err)
			return insErr
		}
		return nil
	})
	if insErr != nil {
		return n, insErr
	}
	if err != nil {
		return n, fmt.Errorf("rejections after %d: %w", n, err)
	}
	return n, nil
}

// prune removes the changes and rejections of runs started more than
// keepDays before ref; the run rows stay, so history still lists them.
func (d *DB) prune(ctx context.Context, tx *sql.Tx, keepDays int, ref time.Time) (int64, error) {
	if keepDays <= 0 {
		return 0, nil
	}
	cutoff := formatTime(ref.Add(-time.Duration(keepDays) * 24 * time.Hour))
	var runs int64
	for _, table := range []string{"changes", "rejections"} {
		res, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE run_id IN (SELECT id FROM runs WHERE started_at < ?)`, cutoff)
		if err != nil {
			return 0, fmt.Errorf("prune %s: %w", table, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("prune %s: %w", table, err)
		}
		runs += n
	}
	if runs > 0 {
		d.log.Info("state: pruned run detail", "rows", runs, "older_than", cutoff)
	}
	return runs, nil
}
