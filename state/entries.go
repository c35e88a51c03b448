package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/contactsync/contactsync/connector"
)

// Entries calls fn for every managed contact of the job, in key order, with
// hashes only. Rows are streamed from one read transaction (a consistent
// snapshot); fn may use the DB, including writes.
func (d *DB) Entries(ctx context.Context, job string, fn func(connector.Entry) error) error {
	rows, err := d.r.QueryContext(ctx, `SELECT key, uuid, status, hash, desired_hash, source_hash
		FROM entries WHERE job = ? ORDER BY key`, job)
	if err != nil {
		return fmt.Errorf("state: entries of job %q: %w", job, err)
	}
	defer rows.Close()
	var hash, desired, source sql.RawBytes
	for rows.Next() {
		var e connector.Entry
		if err := rows.Scan(&e.Key, &e.UUID, &e.Status, &hash, &desired, &source); err != nil {
			return fmt.Errorf("state: entries of job %q: %w", job, err)
		}
		if e.Hash, err = scanHash(hash); err != nil {
			return fmt.Errorf("state: entry %q of job %q: hash: %w", e.Key, job, err)
		}
		if e.Desired, err = scanHash(desired); err != nil {
			return fmt.Errorf("state: entry %q of job %q: desired hash: %w", e.Key, job, err)
		}
		if e.SourceHash, err = scanHash(source); err != nil {
			return fmt.Errorf("state: entry %q of job %q: source hash: %w", e.Key, job, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state: entries of job %q: %w", job, err)
	}
	return nil
}

// contactsBatch bounds the number of keys in one query, well under
// SQLite's limit of bound parameters.
const contactsBatch = 500

// Contacts loads the stored contacts of the given keys; keys the job does
// not manage are left out of the result.
func (d *DB) Contacts(ctx context.Context, job string, keys []string) (map[string]*connector.StoredContact, error) {
	out := make(map[string]*connector.StoredContact, len(keys))
	args := make([]any, 0, contactsBatch+1)
	for start := 0; start < len(keys); start += contactsBatch {
		batch := keys[start:min(start+contactsBatch, len(keys))]
		args = append(args[:0], job)
		for _, k := range batch {
			args = append(args, k)
		}
		q := `SELECT key, uuid, status, hash, desired_hash, source_hash, ` + storedContact + `, desired FROM entries
			WHERE job = ? AND key IN (?` + strings.Repeat(",?", len(batch)-1) + `)`
		if err := d.loadContacts(ctx, job, q, args, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (d *DB) loadContacts(ctx context.Context, job, q string, args []any, out map[string]*connector.StoredContact) error {
	rows, err := d.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("state: contacts of job %q: %w", job, err)
	}
	defer rows.Close()
	var hash, desiredHash, source, contact, desired sql.RawBytes
	for rows.Next() {
		sc := new(connector.StoredContact)
		if err := rows.Scan(&sc.Key, &sc.UUID, &sc.Status, &hash, &desiredHash, &source, &contact, &desired); err != nil {
			return fmt.Errorf("state: contacts of job %q: %w", job, err)
		}
		bad := func(what string, err error) error {
			return fmt.Errorf("state: entry %q of job %q: %s: %w", sc.Key, job, what, err)
		}
		if sc.Hash, err = scanHash(hash); err != nil {
			return bad("hash", err)
		}
		if sc.Desired, err = scanHash(desiredHash); err != nil {
			return bad("desired hash", err)
		}
		if sc.SourceHash, err = scanHash(source); err != nil {
			return bad("source hash", err)
		}
		if c, err := scanContact(contact); err != nil {
			return bad("contact", err)
		} else if c != nil {
			sc.Contact = *c
		}
		if c, err := scanContact(desired); err != nil {
			return bad("desired contact", err)
		} else if c != nil {
			sc.DesiredContact = *c
		}
		out[sc.Key] = sc
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state: contacts of job %q: %w", job, err)
	}
	return nil
}

// Cursor returns the job's stored source cursor, nil if none.
func (d *DB) Cursor(ctx context.Context, job string) ([]byte, error) {
	var c []byte
	err := d.r.QueryRowContext(ctx, `SELECT cursor FROM jobs WHERE job = ?`, job).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: cursor of job %q: %w", job, err)
	}
	return c, nil
}

// Approve lets the job's next run exceed its deletion guard once. The
// approval, with who gave it, stays in the file after the run uses it.
func (d *DB) Approve(ctx context.Context, job string, by string) error {
	if job == "" {
		return errors.New("state: approve: no job name")
	}
	_, err := d.w.ExecContext(ctx, `INSERT INTO approvals (job, approved_by, approved_at) VALUES (?, ?, ?)`,
		job, by, formatTime(d.now()))
	if err != nil {
		return fmt.Errorf("state: approve job %q: %w", job, err)
	}
	return nil
}

// Approved reports whether an approval is pending for the job.
func (d *DB) Approved(ctx context.Context, job string) (bool, error) {
	var ok bool
	err := d.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM approvals WHERE job = ? AND used_by_run IS NULL)`, job).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("state: approval of job %q: %w", job, err)
	}
	return ok, nil
}
