package state

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/contactsync/contactsync/connector"
)

// Intend records entries before their calls are sent, committed (and
// synced to disk) before it returns.
func (d *DB) Intend(ctx context.Context, job string, entries []connector.JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO journal (job, run_id, key, op, uuid, contact, intended_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		now := formatTime(d.now())
		for i := range entries {
			e := &entries[i]
			if _, err := st.ExecContext(ctx, job, e.RunID, e.Key, string(e.Op), e.UUID, contactValue(&e.Contact), now); err != nil {
				return fmt.Errorf("key %q: %w", e.Key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: journal of job %q: intend: %w", job, err)
	}
	return nil
}

// Answer records the outcome of entries: the UUID a create got. An entry
// is matched to its intent by run, key and operation; an answer without an
// intent is recorded all the same, as it is a fact about the remote system.
func (d *DB) Answer(ctx context.Context, job string, entries []connector.JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		upd, err := tx.PrepareContext(ctx, `UPDATE journal SET uuid = ?, answered_at = ?
			WHERE job = ? AND key = ? AND run_id = ? AND op = ?`)
		if err != nil {
			return err
		}
		defer upd.Close()
		ins, err := tx.PrepareContext(ctx, `INSERT INTO journal (job, run_id, key, op, uuid, contact, intended_at, answered_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		now := formatTime(d.now())
		for i := range entries {
			e := &entries[i]
			res, err := upd.ExecContext(ctx, e.UUID, now, job, e.Key, e.RunID, string(e.Op))
			if err != nil {
				return fmt.Errorf("key %q: %w", e.Key, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("key %q: %w", e.Key, err)
			} else if n > 0 {
				continue
			}
			if _, err := ins.ExecContext(ctx, job, e.RunID, e.Key, string(e.Op), e.UUID, contactValue(&e.Contact), now, now); err != nil {
				return fmt.Errorf("key %q: %w", e.Key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: journal of job %q: answer: %w", job, err)
	}
	return nil
}

// Open returns the job's journal entries not yet cleared by a commit, in
// the order they were recorded.
func (d *DB) Open(ctx context.Context, job string) ([]connector.JournalEntry, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT run_id, key, op, uuid, contact FROM journal WHERE job = ? ORDER BY id`, job)
	if err != nil {
		return nil, fmt.Errorf("state: journal of job %q: %w", job, err)
	}
	defer rows.Close()
	var out []connector.JournalEntry
	var contact sql.RawBytes
	for rows.Next() {
		var e connector.JournalEntry
		if err := rows.Scan(&e.RunID, &e.Key, &e.Op, &e.UUID, &contact); err != nil {
			return nil, fmt.Errorf("state: journal of job %q: %w", job, err)
		}
		if e.Contact, err = connector.UnmarshalContact(contact); err != nil {
			return nil, fmt.Errorf("state: journal of job %q: key %q: %w", job, e.Key, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: journal of job %q: %w", job, err)
	}
	return out, nil
}

// inTx runs fn in a write transaction, committed when fn returns nil and
// rolled back otherwise.
func (d *DB) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
