// Package state is contactsync's memory: a SQLite file that records which
// Webex contact UUID belongs to which source record, what was last emitted
// for it, the source cursors, pending approvals, the sink journal, and the
// audit of every run. It implements connector.Store.
//
// The file is opened with a single writer connection (every write
// transaction starts IMMEDIATE, so writers queue on busy_timeout instead of
// failing on a lock upgrade) and a pool of read-only connections, so that a
// callback of Entries may query the state again while the scan is open. The
// journal is WAL with synchronous=FULL: a committed Journal.Intend survives a
// power cut, which is what keeps a create from being sent twice.
package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/contactsync/contactsync/connector"
	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// ErrNotFound is wrapped by errors about a run that does not exist.
var ErrNotFound = errors.New("not found")

// DB is the SQLite state file.
type DB struct {
	path string
	w    *sql.DB // one connection: every write goes through it
	r    *sql.DB // read-only connections
	log  *slog.Logger
	now  func() time.Time
}

var _ connector.Store = (*DB)(nil)

// busyTimeout is how long a statement waits for another process or
// connection holding the write lock before failing with "database is locked".
const busyTimeout = 5 * time.Second

// Open opens the state file at path, creating it (mode 0600, and its folder
// with mode 0700) on first use, and brings its schema up to date. A file
// written by a newer contactsync (a newer schema version) is refused.
func Open(ctx context.Context, path string, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, errors.New("state: no state file configured")
	}
	// The driver takes what follows a '?' as its options.
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("state: %q: a state file path may not contain '?'", path)
	}
	created, err := createFile(path, logger)
	if err != nil {
		return nil, err
	}
	opts := fmt.Sprintf("_busy_timeout=%d&_foreign_keys=1&_synchronous=FULL", busyTimeout.Milliseconds())
	if err := setPageSize(ctx, path, opts); err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	w, err := sql.Open("sqlite3", path+"?"+opts+"&_journal_mode=WAL&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	from, err := migrate(ctx, w, path)
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	// A commit of a million changes grows the WAL to hundreds of MB; the
	// limit gives that space back once the WAL is checkpointed. The one
	// writer connection is never recycled, so setting it once holds.
	if _, err := w.ExecContext(ctx, `PRAGMA journal_size_limit = 16777216`); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite3", path+"?"+opts+"&_query_only=1")
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	r.SetMaxIdleConns(2)
	switch {
	case created:
		logger.Info("state: created", "path", path, "schema_version", SchemaVersion())
	case from < SchemaVersion():
		logger.Info("state: schema upgraded", "path", path, "from", from, "to", SchemaVersion())
	}
	return &DB{path: path, w: w, r: r, log: logger, now: time.Now}, nil
}

// createFile makes the state file with mode 0600 before SQLite opens it, as
// SQLite would create it with the umask's mode (0644), and its WAL and shm
// files take the database file's mode.
func createFile(path string, logger *slog.Logger) (created bool, err error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("state: create folder of %s: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return true, f.Close()
	case !errors.Is(err, os.ErrExist):
		return false, fmt.Errorf("state: create %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("state: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("state: %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("state: file is readable by other users; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
	}
	return false, nil
}

// pageSize is the page size of a state file this version creates. SQLite's
// default, 4 KB, made a first import of 1,000,000 contacts write 112,000
// pages to the WAL and as many again into the file at the checkpoint, a
// pwrite, a frame header and a checksum each; at 16 KB the same inserts
// take about a fifth less time and CPU (docs/performance-notes.md, item
// 27). A file keeps the page size it was created with: a WAL file cannot
// change it, and an older file is left as it is.
const pageSize = 16384

// setPageSize gives a state file SQLite has not written yet (empty, as
// createFile leaves it) its page size and WAL mode, which writes its
// header. The writer's connection cannot: the driver switches it to WAL
// as it connects, before any statement, and the page size of a WAL file
// is fixed. Two processes racing here both set the same.
func setPageSize(ctx context.Context, path, opts string) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() > 0 {
		return err
	}
	db, err := sql.Open("sqlite3", path+"?"+opts)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, fmt.Sprintf(`PRAGMA page_size = %d`, pageSize)); err != nil {
		return fmt.Errorf("page size: %w", err)
	}
	if _, err := db.ExecContext(ctx, `PRAGMA journal_mode = WAL`); err != nil {
		return fmt.Errorf("journal mode: %w", err)
	}
	return db.Close()
}

// Path returns the state file's path.
func (d *DB) Path() string { return d.path }

// Close closes the state file.
func (d *DB) Close() error {
	errR := d.r.Close()
	if err := d.w.Close(); err != nil {
		return fmt.Errorf("state: close %s: %w", d.path, err)
	}
	if errR != nil {
		return fmt.Errorf("state: close %s: %w", d.path, errR)
	}
	return nil
}

// tsLayout is fixed-width so that stored times sort as text.
const tsLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(tsLayout) }

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: formatTime(t), Valid: true}
}

func parseTime(s sql.NullString) (time.Time, error) {
	if !s.Valid || s.String == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s.String)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q: %w", s.String, err)
	}
	return t, nil
}

func scanHash(b []byte) (connector.Hash, error) {
	var h connector.Hash
	if len(b) == 0 {
		return h, nil
	}
	if len(b) != len(h) {
		return h, fmt.Errorf("hash of %d bytes, want %d", len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// contactValue stores a nil contact as NULL, and others as TEXT, not BLOB,
// so that SQLite's JSON functions read them in the sqlite3 shell.
func contactValue(c *connector.Contact) any {
	if c == nil {
		return nil
	}
	return string(c.Marshal())
}

func scanContact(b []byte) (*connector.Contact, error) {
	if b == nil {
		return nil, nil
	}
	c, err := connector.UnmarshalContact(b)
	if err != nil {
		return nil, err
	}
	return &c, nil
}
