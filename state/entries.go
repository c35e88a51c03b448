package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/contactsync/contactsync/connector"
)

// entriesQuery reads what the engine's index needs of an entry in four
// values: a byte of status and which hashes are set, the lengths of the key
// and of the UUID, and one blob of the key, the UUID and the hashes set. The driver allocates
// every text or blob value it returns and boxes it: six columns cost nine
// allocations per entry, this costs two.
const entriesColumns = `SELECT
		CASE status WHEN 'bound' THEN 1 WHEN 'pending' THEN 2 WHEN 'failed' THEN 3 ELSE 0 END
			| iif(hash IS NULL, 0, 4) | iif(desired_hash IS NULL, 0, 8) | iif(source_hash IS NULL, 0, 16),
		length(CAST(key AS BLOB)), length(CAST(uuid AS BLOB)),
		CAST(key || uuid || coalesce(hash, x'') || coalesce(desired_hash, x'') || coalesce(source_hash, x'') AS BLOB)
	FROM entries `

const entriesQuery = entriesColumns + `WHERE job = ? ORDER BY key`

// Bits of entriesQuery's first column.
const (
	entryStatusMask = 3
	entryHasHash    = 4
	entryHasDesired = 8
	entryHasSource  = 16
)

var entryStatuses = [...]string{1: connector.EntryBound, 2: connector.EntryPending, 3: connector.EntryFailed}

// Entries calls fn for every managed contact of the job, in key order, with
// hashes only. Rows are streamed from one read transaction (a consistent
// snapshot); fn may use the DB, including writes.
func (d *DB) Entries(ctx context.Context, job string, fn func(connector.Entry) error) error {
	return d.scanEntries(ctx, job, entriesQuery, []any{job}, fn)
}

// scanEntries calls fn for each entry of job that q (entriesColumns and a
// WHERE clause) selects.
func (d *DB) scanEntries(ctx context.Context, job, q string, args []any, fn func(connector.Entry) error) error {
	rows, err := d.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("state: entries of job %q: %w", job, err)
	}
	defer rows.Close()
	var (
		meta, keyLen, uuidLen int64
		row                   sql.RawBytes
		strs                  stringArena
	)
	for rows.Next() {
		if err := rows.Scan(&meta, &keyLen, &uuidLen, &row); err != nil {
			return fmt.Errorf("state: entries of job %q: %w", job, err)
		}
		var e connector.Entry
		hashes := meta>>2&1 + meta>>3&1 + meta>>4&1
		status := meta & entryStatusMask
		if status == 0 || int64(len(row)) != keyLen+uuidLen+hashes*int64(len(e.Hash)) {
			// A hash of another size: the columns one by one say which.
			return d.badEntry(ctx, job, row, keyLen)
		}
		e.Status = entryStatuses[status]
		e.Key = strs.string(row[:keyLen])
		e.UUID = strs.string(row[keyLen : keyLen+uuidLen])
		h := row[keyLen+uuidLen:]
		for _, x := range []struct {
			bit  int64
			hash *connector.Hash
		}{{entryHasHash, &e.Hash}, {entryHasDesired, &e.Desired}, {entryHasSource, &e.SourceHash}} {
			if meta&x.bit != 0 {
				h = h[copy(x.hash[:], h):]
			}
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

var _ connector.EntryLookup = (*DB)(nil)

// EntriesByKey calls fn for each of keys that the job holds, 500 keys a
// query, in no particular order.
func (d *DB) EntriesByKey(ctx context.Context, job string, keys []string, fn func(connector.Entry) error) error {
	return byKeys(job, keys, func(where string, args []any) error {
		return d.scanEntries(ctx, job, entriesColumns+where, args, fn)
	})
}

// EntriesWaiting calls fn for each entry of the job whose content waits to
// be emitted, through the partial index entries_waiting (schema version
// 4): as fast with a million entries as with ten.
func (d *DB) EntriesWaiting(ctx context.Context, job string, fn func(connector.Entry) error) error {
	return d.scanEntries(ctx, job, entriesColumns+`INDEXED BY entries_waiting WHERE job = ? AND desired_hash IS NOT NULL`, []any{job}, fn)
}

// EntryCounts returns how many entries the job holds, and how many of them
// are managed contacts (every entry but a create that failed).
func (d *DB) EntryCounts(ctx context.Context, job string) (entries, managed int, err error) {
	err = d.r.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE status <> 'failed') FROM entries WHERE job = ?`, job).
		Scan(&entries, &managed)
	if err != nil {
		return 0, 0, fmt.Errorf("state: entries of job %q: %w", job, err)
	}
	return entries, managed, nil
}

// badEntry reads an entry that entriesQuery could not split the columns by
// column, for the error about it.
func (d *DB) badEntry(ctx context.Context, job string, row []byte, keyLen int64) error {
	key := string(row[:max(0, min(int(keyLen), len(row)))])
	var status string
	var hash, desired, source []byte
	err := d.r.QueryRowContext(ctx, `SELECT status, hash, desired_hash, source_hash FROM entries WHERE job = ? AND key = ?`, job, key).
		Scan(&status, &hash, &desired, &source)
	if err != nil {
		return fmt.Errorf("state: entry %q of job %q: %w", key, job, err)
	}
	for _, c := range []struct {
		what string
		b    []byte
	}{{"hash", hash}, {"desired hash", desired}, {"source hash", source}} {
		if _, err := scanHash(c.b); err != nil {
			return fmt.Errorf("state: entry %q of job %q: %s: %w", key, job, c.what, err)
		}
	}
	return fmt.Errorf("state: entry %q of job %q: status %q", key, job, status)
}

// stringArena makes strings out of bytes copied into shared chunks, one
// allocation per chunk instead of one per string. A chunk is never written
// again once a string points into it; it stays alive as long as one of its
// strings does, which the index that keeps every entry's key does anyway.
type stringArena struct{ buf []byte }

const stringArenaChunk = 32 << 10

func (a *stringArena) string(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > stringArenaChunk/4 {
		return string(b)
	}
	if cap(a.buf)-len(a.buf) < len(b) {
		a.buf = make([]byte, 0, stringArenaChunk)
	}
	n := len(a.buf)
	a.buf = append(a.buf, b...)
	return unsafe.String(&a.buf[n], len(b))
}

// contactsBatch bounds the number of keys in one query, well under
// SQLite's limit of bound parameters.
const contactsBatch = 500

// Contacts loads the stored contacts of the given keys; keys the job does
// not manage are left out of the result.
func (d *DB) Contacts(ctx context.Context, job string, keys []string) (map[string]*connector.StoredContact, error) {
	out := make(map[string]*connector.StoredContact, len(keys))
	err := byKeys(job, keys, func(where string, args []any) error {
		return d.loadContacts(ctx, job, `SELECT key, uuid, status, hash, desired_hash, source_hash, `+storedContact+`, desired FROM entries `+where, args, out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// byKeys calls query with a WHERE clause that selects up to contactsBatch
// of the job's keys and its arguments, until every key was asked for.
func byKeys(job string, keys []string, query func(where string, args []any) error) error {
	args := make([]any, 0, contactsBatch+1)
	for start := 0; start < len(keys); start += contactsBatch {
		batch := keys[start:min(start+contactsBatch, len(keys))]
		args = append(args[:0], job)
		for _, k := range batch {
			args = append(args, k)
		}
		if err := query(`WHERE job = ? AND key IN (?`+strings.Repeat(",?", len(batch)-1)+`)`, args); err != nil {
			return err
		}
	}
	return nil
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
		return fmt.Errorf("state: approve job %q: %w", job, describeBusy(err))
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
