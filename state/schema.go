package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrations are applied in order; migrations[i] brings the schema from
// version i to version i+1. A released migration is never edited: a change
// to the schema is a new element appended to the slice.
var migrations = []string{
	// 1: the first schema.
	`
CREATE TABLE jobs (
	job    TEXT PRIMARY KEY,
	cursor BLOB
) WITHOUT ROWID;

-- One row per managed contact. The small columns come first so that
-- Entries, which reads only them, never decodes the contents; the table is
-- clustered on (job, key), which is also the lookup index.
CREATE TABLE entries (
	job          TEXT NOT NULL,
	key          TEXT NOT NULL,
	uuid         TEXT NOT NULL DEFAULT '',
	status       TEXT NOT NULL CHECK (status IN ('bound', 'pending', 'failed')),
	hash         BLOB,          -- connector.Hash of contact; NULL: nothing emitted yet
	desired_hash BLOB,          -- connector.Hash of desired; NULL: nothing waiting
	contact      TEXT,          -- last emitted content, connector.Contact.Marshal
	desired      TEXT,          -- content waiting to be emitted
	PRIMARY KEY (job, key)
) WITHOUT ROWID;

CREATE TABLE runs (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	job            TEXT NOT NULL,
	kind           TEXT NOT NULL DEFAULT '',
	started_at     TEXT NOT NULL,  -- UTC, fixed-width RFC 3339 with nanoseconds
	finished_at    TEXT,
	status         TEXT NOT NULL,
	created        INTEGER NOT NULL DEFAULT 0,
	updated        INTEGER NOT NULL DEFAULT 0,
	deleted        INTEGER NOT NULL DEFAULT 0,
	unchanged      INTEGER NOT NULL DEFAULT 0,
	rejected       INTEGER NOT NULL DEFAULT 0,
	adopted        INTEGER NOT NULL DEFAULT 0,
	waiting        INTEGER NOT NULL DEFAULT 0,
	source_records INTEGER NOT NULL DEFAULT 0,
	reason         TEXT NOT NULL DEFAULT '',
	config_hash    TEXT NOT NULL DEFAULT '',
	source         TEXT NOT NULL DEFAULT '',
	files          TEXT,           -- JSON array of file names
	trigger        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX runs_job ON runs (job, id);
CREATE INDEX runs_status ON runs (status) WHERE status = 'running';

-- The audit: every change of every run, with the old and new contents;
-- field diffs are computed when read.
CREATE TABLE changes (
	id      INTEGER PRIMARY KEY,
	run_id  INTEGER NOT NULL REFERENCES runs (id),
	action  TEXT NOT NULL,
	key     TEXT NOT NULL,
	uuid    TEXT NOT NULL DEFAULT '',
	status  TEXT NOT NULL DEFAULT '',
	applied INTEGER NOT NULL,
	reason  TEXT NOT NULL DEFAULT '',
	old     TEXT,
	new     TEXT
);
CREATE INDEX changes_run ON changes (run_id);

CREATE TABLE rejections (
	id     INTEGER PRIMARY KEY,
	run_id INTEGER NOT NULL REFERENCES runs (id),
	key    TEXT NOT NULL,
	origin TEXT NOT NULL DEFAULT '',
	reason TEXT NOT NULL
);
CREATE INDEX rejections_run ON rejections (run_id);

-- Approvals are kept after use so that an auditor can tell who let a run
-- exceed its deletion guard.
CREATE TABLE approvals (
	id          INTEGER PRIMARY KEY,
	job         TEXT NOT NULL,
	approved_by TEXT NOT NULL,
	approved_at TEXT NOT NULL,
	used_by_run INTEGER REFERENCES runs (id)
);
CREATE INDEX approvals_open ON approvals (job) WHERE used_by_run IS NULL;

CREATE TABLE journal (
	id          INTEGER PRIMARY KEY,
	job         TEXT NOT NULL,
	run_id      INTEGER NOT NULL,
	key         TEXT NOT NULL,
	op          TEXT NOT NULL,
	uuid        TEXT NOT NULL DEFAULT '',
	contact     TEXT NOT NULL,
	intended_at TEXT NOT NULL,
	answered_at TEXT
);
CREATE INDEX journal_key ON journal (job, key, run_id);
`,
	// 2: the digest of the source record (and mapping) an entry's content
	// came from, so that a rerun skips the mapping of unchanged records.
	// NULL (every entry after the upgrade): unknown, the record is mapped.
	`
ALTER TABLE entries ADD COLUMN source_hash BLOB;
`,
	// 3: an entry's emitted content may be the new content of the audit
	// row that emitted it, stored once: contact is NULL and contact_ref is
	// the changes row's id. Pruning that row first copies the content back
	// into the entry. Entries written before keep their contact.
	`
ALTER TABLE entries ADD COLUMN contact_ref INTEGER;
`,
	// 4: the entries whose content waits to be emitted, which an
	// incremental run retries without reading every entry of the job.
	`
CREATE INDEX entries_waiting ON entries (job, key) WHERE desired_hash IS NOT NULL;
`,
	// 5: a run's audit rows are found by the range of their ids, which
	// the run row records, instead of an index on changes.run_id: at a
	// million audit rows a run, keeping that index up cost 12% of their
	// inserts. A run writes its rows under the writer's lock, one id after
	// the other; the queries still check run_id, so a range that holds
	// other runs' rows (ids reused after a revert) only costs their
	// reading. NULL: the run has no audit rows (none, or pruned).
	`
ALTER TABLE runs ADD COLUMN first_change INTEGER;
ALTER TABLE runs ADD COLUMN last_change INTEGER;
UPDATE runs SET first_change = (SELECT min(id) FROM changes WHERE run_id = runs.id),
	last_change = (SELECT max(id) FROM changes WHERE run_id = runs.id);
DROP INDEX changes_run;
`,
}

// SchemaVersion returns the schema version this binary writes (for
// contactsync version).
func SchemaVersion() int { return len(migrations) }

// migrate brings the schema up to date in one transaction, so that a
// failed migration leaves the file as it was.
//
// A file already up to date is only read: the write transaction would wait
// for whichever run holds the writer, and `contactsync history` must work
// while a long sync is writing.
func migrate(ctx context.Context, db *sql.DB, path string) (from int, err error) {
	var v sql.NullInt64
	err = db.QueryRowContext(ctx, `SELECT CASE WHEN EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')
		THEN 0 END`).Scan(&v)
	if err == nil && v.Valid {
		err = db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	}
	switch {
	case err == nil && v.Valid && v.Int64 == int64(len(migrations)):
		return len(migrations), nil
	case err == nil && v.Valid && v.Int64 > int64(len(migrations)):
		return int(v.Int64), newerSchema(path, int(v.Int64))
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return 0, fmt.Errorf("state: migrate %s: %w", path, describeBusy(err))
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("state: migrate %s: %w", path, describeBusy(err))
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err = tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return 0, fmt.Errorf("state: migrate %s: %w", path, err)
	}
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&from)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		from = 0
		if _, err = tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return 0, fmt.Errorf("state: migrate %s: %w", path, err)
		}
	case err != nil:
		return 0, fmt.Errorf("state: migrate %s: read schema version: %w", path, err)
	}
	if from > len(migrations) {
		err = newerSchema(path, from)
		return from, err
	}
	for v := from; v < len(migrations); v++ {
		if _, err = tx.ExecContext(ctx, migrations[v]); err != nil {
			return from, fmt.Errorf("state: migrate %s to version %d: %w", path, v+1, err)
		}
	}
	if from < len(migrations) {
		if _, err = tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(migrations)); err != nil {
			return from, fmt.Errorf("state: migrate %s: %w", path, err)
		}
	}
	if err = tx.Commit(); err != nil {
		return from, fmt.Errorf("state: migrate %s: commit: %w", path, describeBusy(err))
	}
	return from, nil
}

func newerSchema(path string, v int) error {
	return fmt.Errorf("state: %s has schema version %d, newer than this contactsync knows (%d): run a newer contactsync, or restore a backup taken before the upgrade", path, v, len(migrations))
}
