package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
func (d *DB) Commit(ctx context.Context, c *connector.Commit) error {
	if c == nil {
		return errors.New("state: commit: nothing to commit")
	}
	fail := func(err error) error {
		return fmt.Errorf("state: commit run %d of job %q: %w", c.Run.ID, c.Run.Job, err)
	}
	if c.Run.Job == "" {
		return fail(errors.New("no job name"))
	}
	if !finalStatus(c.Run.Status) {
		return fail(fmt.Errorf("status %q is not a final run status", c.Run.Status))
	}
	// One code path with a staged run: a commit is a stage opened and
	// committed at once.
	s, err := d.stage(ctx, c.Run)
	if err != nil {
		return fail(err)
	}
	return s.Commit(ctx, c)
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

// oldChanges selects the audit rows of runs started before ?1, by the
// span of ids each run row records (schema version 5). CROSS JOIN and the
// unary + keep SQLite from reading every audit row to find its run, or to
// index them by run for the query.
const oldChanges = `SELECT c.id, runs.job, c.key FROM runs CROSS JOIN changes c
	WHERE runs.started_at < ?1 AND c.id BETWEEN runs.first_change AND runs.last_change AND +c.run_id = runs.id`

// pruneChanges deletes the audit rows of runs started before ?1.
const pruneChanges = `DELETE FROM changes WHERE id IN (SELECT id FROM (` + oldChanges + `))`

// keepContents copies into the entries the contents they share with the
// audit rows of runs started before ?1.
const keepContents = `WITH old AS (` + oldChanges + `)
	UPDATE entries SET contact = (SELECT new FROM changes WHERE changes.id = entries.contact_ref), contact_ref = NULL
	WHERE (job, key) IN (SELECT job, key FROM old) AND contact_ref IN (SELECT id FROM old)`

// prune removes the changes and rejections of runs started more than
// keepDays before ref; the run rows stay, so history still lists them.
func (d *DB) prune(ctx context.Context, tx *sql.Tx, keepDays int, ref time.Time) (int64, error) {
	if keepDays <= 0 {
		return 0, nil
	}
	cutoff := formatTime(ref.Add(-time.Duration(keepDays) * 24 * time.Hour))
	// Entries whose content is an audit row about to go get their own
	// copy. They are found through the pruned rows' jobs and keys (the
	// primary key), not by a scan of every entry.
	if _, err := tx.ExecContext(ctx, keepContents, cutoff); err != nil {
		return 0, fmt.Errorf("prune changes: keep contents: %w", err)
	}
	var runs int64
	for _, p := range []struct{ table, q string }{
		{"changes", pruneChanges},
		{"rejections", `DELETE FROM rejections WHERE run_id IN (SELECT id FROM runs WHERE started_at < ?1)`},
	} {
		res, err := tx.ExecContext(ctx, p.q, cutoff)
		if err != nil {
			return 0, fmt.Errorf("prune %s: %w", p.table, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("prune %s: %w", p.table, err)
		}
		runs += n
	}
	// The spans of pruned runs would only widen the next pruning's reads.
	if _, err := tx.ExecContext(ctx, `UPDATE runs SET first_change = NULL, last_change = NULL
		WHERE started_at < ? AND first_change IS NOT NULL`, cutoff); err != nil {
		return 0, fmt.Errorf("prune changes: spans: %w", err)
	}
	if runs > 0 {
		d.log.Info("state: pruned run detail", "rows", runs, "older_than", cutoff)
	}
	return runs, nil
}
