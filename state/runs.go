package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/contactsync/contactsync/connector"
)

const runColumns = `id, job, kind, started_at, finished_at, status, created, updated, deleted,
	unchanged, rejected, adopted, waiting, source_records, reason, config_hash, source, files, trigger`

type scanner interface{ Scan(dest ...any) error }

func scanRun(s scanner) (connector.Run, error) {
	var (
		r                 connector.Run
		started, finished sql.NullString
		files             sql.NullString
	)
	err := s.Scan(&r.ID, &r.Job, &r.Kind, &started, &finished, &r.Status,
		&r.Created, &r.Updated, &r.Deleted, &r.Unchanged, &r.Rejected, &r.Adopted, &r.Waiting, &r.Counts.Source,
		&r.Reason, &r.ConfigHash, &r.Source, &files, &r.Trigger)
	if err != nil {
		return r, err
	}
	if r.StartedAt, err = parseTime(started); err != nil {
		return r, fmt.Errorf("run %d: started_at: %w", r.ID, err)
	}
	if r.FinishedAt, err = parseTime(finished); err != nil {
		return r, fmt.Errorf("run %d: finished_at: %w", r.ID, err)
	}
	if files.Valid && files.String != "" {
		if err := json.Unmarshal([]byte(files.String), &r.Files); err != nil {
			return r, fmt.Errorf("run %d: files: %w", r.ID, err)
		}
	}
	return r, nil
}

func filesValue(files []string) (any, error) {
	if len(files) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(files)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// StartRun records that a run began, with status running, committed at
// once, and returns its id. A zero StartedAt is taken as now.
func (d *DB) StartRun(ctx context.Context, r connector.Run) (int64, error) {
	id, err := d.insertRun(ctx, d.w, &r, connector.StatusRunning)
	if err != nil {
		return 0, fmt.Errorf("state: start run of job %q: %w", r.Job, describeBusy(err))
	}
	return id, nil
}

func (d *DB) insertRun(ctx context.Context, x execer, r *connector.Run, status string) (int64, error) {
	if r.Job == "" {
		return 0, errors.New("no job name")
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = d.now()
	}
	files, err := filesValue(r.Files)
	if err != nil {
		return 0, err
	}
	res, err := x.ExecContext(ctx, `INSERT INTO runs (job, kind, started_at, status, reason, config_hash, source, files, trigger)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Job, r.Kind, formatTime(r.StartedAt), status, r.Reason, r.ConfigHash, r.Source, files, r.Trigger)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// finalStatus reports whether a run may end with status s.
func finalStatus(s string) bool {
	switch s {
	case connector.StatusOK, connector.StatusFailed, connector.StatusBlocked, connector.StatusDryRun:
		return true
	}
	return false
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// updateRun writes a run's final status, figures and files. The job and
// start time stay as StartRun recorded them.
func (d *DB) updateRun(ctx context.Context, x execer, r *connector.Run) error {
	if !finalStatus(r.Status) {
		return fmt.Errorf("status %q is not a final run status", r.Status)
	}
	if r.FinishedAt.IsZero() {
		r.FinishedAt = d.now()
	}
	files, err := filesValue(r.Files)
	if err != nil {
		return err
	}
	res, err := x.ExecContext(ctx, `UPDATE runs SET kind = ?, finished_at = ?, status = ?,
		created = ?, updated = ?, deleted = ?, unchanged = ?, rejected = ?, adopted = ?, waiting = ?, source_records = ?,
		reason = ?, config_hash = ?, source = ?, files = ?, trigger = ?
		WHERE id = ?`,
		r.Kind, nullTime(r.FinishedAt), r.Status,
		r.Created, r.Updated, r.Deleted, r.Unchanged, r.Rejected, r.Adopted, r.Waiting, r.Counts.Source,
		r.Reason, r.ConfigHash, r.Source, files, r.Trigger, r.ID)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("run %d: %w (StartRun records it)", r.ID, ErrNotFound)
	}
	return nil
}

// FinishRun records the end of a run that commits nothing else (failed,
// blocked, dry run). A zero FinishedAt is taken as now.
func (d *DB) FinishRun(ctx context.Context, r connector.Run) error {
	if err := d.updateRun(ctx, d.w, &r); err != nil {
		return fmt.Errorf("state: finish run %d of job %q: %w", r.ID, r.Job, err)
	}
	return nil
}

// RecoverInterrupted marks every run still "running" as failed with the
// given reason, and returns them (with their new status) so that the caller
// can remove their output files. Call it only while holding Lock, before
// starting any run: a run under way in this process would be marked too.
func (d *DB) RecoverInterrupted(ctx context.Context, reason string) ([]connector.Run, error) {
	rows, err := d.w.QueryContext(ctx, `UPDATE runs SET status = ?, reason = ?, finished_at = ?
		WHERE status = ? RETURNING `+runColumns,
		connector.StatusFailed, reason, formatTime(d.now()), connector.StatusRunning)
	if err != nil {
		return nil, fmt.Errorf("state: recover interrupted runs: %w", describeBusy(err))
	}
	defer rows.Close()
	var out []connector.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("state: recover interrupted runs: %w", describeBusy(err))
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: recover interrupted runs: %w", describeBusy(err))
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("state: recover interrupted runs: %w", describeBusy(err))
	}
	for _, r := range out {
		d.log.Warn("state: run was interrupted; marked failed", "run", r.ID, "job", r.Job, "started_at", r.StartedAt)
	}
	return out, nil
}

// Runs lists past runs, newest first; job "" means every job, and a limit
// of 0 or less means no limit.
func (d *DB) Runs(ctx context.Context, job string, limit int) ([]connector.Run, error) {
	if limit <= 0 {
		limit = -1
	}
	q := `SELECT ` + runColumns + ` FROM runs ORDER BY id DESC LIMIT ?`
	args := []any{limit}
	if job != "" {
		q = `SELECT ` + runColumns + ` FROM runs WHERE job = ? ORDER BY id DESC LIMIT ?`
		args = []any{job, limit}
	}
	rows, err := d.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("state: list runs: %w", err)
	}
	defer rows.Close()
	var out []connector.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("state: list runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: list runs: %w", err)
	}
	return out, nil
}

// RunDetail returns one run with its changes, in the order they were
// committed, and its rejections. Runs older than audit.keep_days have no
// changes or rejections left. An unknown id wraps ErrNotFound.
func (d *DB) RunDetail(ctx context.Context, id int64) (connector.Run, []connector.ChangeRecord, []connector.Rejection, error) {
	fail := func(err error) (connector.Run, []connector.ChangeRecord, []connector.Rejection, error) {
		return connector.Run{}, nil, nil, fmt.Errorf("state: run %d: %w", id, err)
	}
	// One read transaction, so that a prune cannot fall between the reads.
	tx, err := d.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fail(err)
	}
	defer func() { _ = tx.Rollback() }()
	run, err := scanRun(tx.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return fail(ErrNotFound)
	}
	if err != nil {
		return fail(err)
	}
	changes, err := runChanges(ctx, tx, id)
	if err != nil {
		return fail(err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT key, origin, reason FROM rejections WHERE run_id = ? ORDER BY id`, id)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	var rejected []connector.Rejection
	for rows.Next() {
		var rj connector.Rejection
		if err := rows.Scan(&rj.Key, &rj.Origin, &rj.Reason); err != nil {
			return fail(err)
		}
		rejected = append(rejected, rj)
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	return run, changes, rejected, nil
}

// runChangesQuery reads the audit rows of run ?1 by the span of ids its
// row records (see oldChanges).
const runChangesQuery = `SELECT c.id, c.action, c.key, c.uuid, c.status, c.applied, c.reason, c.old, c.new
	FROM runs CROSS JOIN changes c
	WHERE runs.id = ?1 AND c.id BETWEEN runs.first_change AND runs.last_change AND +c.run_id = runs.id ORDER BY c.id`

func runChanges(ctx context.Context, tx *sql.Tx, id int64) ([]connector.ChangeRecord, error) {
	rows, err := tx.QueryContext(ctx, runChangesQuery, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []connector.ChangeRecord
	for rows.Next() {
		var (
			c        connector.ChangeRecord
			rowID    int64
			old, new []byte
		)
		if err := rows.Scan(&rowID, &c.Action, &c.Key, &c.UUID, &c.Status, &c.Applied, &c.Reason, &old, &new); err != nil {
			return nil, err
		}
		if c.Old, err = scanContact(old); err != nil {
			return nil, fmt.Errorf("change %d (key %q): old: %w", rowID, c.Key, err)
		}
		if c.New, err = scanContact(new); err != nil {
			return nil, fmt.Errorf("change %d (key %q): new: %w", rowID, c.Key, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
