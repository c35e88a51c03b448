package state

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
	"unsafe"

	"github.com/contactsync/contactsync/connector"
)

// applier applies a run's changes through the driver connection of the
// commit's transaction. database/sql cost as much per statement as SQLite's
// own work (argument conversion, a boxed copy of every value, a lock per
// call); at the driver level a statement is one cgo crossing and the values
// are boxed once per change, for the entry and its audit row.
type applier struct {
	ctx   context.Context // without cancellation: see ctxCheckEvery
	conn  driver.Conn
	job   any // boxed once
	runID any
	// lastID is the id of the last audit row queued: audit rows get their
	// ids from Commit, so that an entry can name the row holding its content.
	// firstID is the first id of this run's rows (the run row records
	// both, see schema version 5).
	lastID, firstID int64

	update  driver.Stmt // applied update: emitted content := New
	desired driver.Stmt // not applied: desired content := New
	bind    driver.Stmt
	touch   driver.Stmt // only the source hash, no audit row
	remove  driver.Stmt
	get     driver.Stmt
	audit   driver.Stmt
	// unCreate and unAudit undo a staged create (Stage.Revert).
	unCreate driver.Stmt
	unAudit  driver.Stmt

	// Applied creates (by far the most common change of a big run) and
	// audit rows are inserted createBatch and auditBatch at a time; a
	// change of another kind first inserts the creates before it, so that
	// every statement sees the entries as the changes before it left them.
	// An applied create's emitted content is New.
	auditMany driver.Stmt
	inOrder   createQueue         // creates inserted into entries as they come
	later     laterCreates        // creates whose keys came out of order (apply_order.go)
	pending   []driver.NamedValue // auditColumns values per pending audit row

	hashes []byte // backing store of the pending rows' hashes
	args   []driver.NamedValue
	row    [2]driver.Value
}

// createBatch and auditBatch are how many rows one statement inserts
// (7 and 10 parameters each, well under SQLite's limit of 32766).
const (
	createBatch   = 64
	auditBatch    = 64
	createColumns = 7
	auditColumns  = 10
)

const (
	createInsert = `INSERT INTO entries (job, key, uuid, status, hash, contact_ref, source_hash) VALUES `
	// An applied create is a new Webex contact: its UUID, or none while
	// pending, replaces whatever the entry held (a failed create). The
	// rows of one statement are inserted in order, so a key twice in a
	// batch ends as the later change left it.
	createConflict = `
			ON CONFLICT (job, key) DO UPDATE SET uuid = excluded.uuid, status = excluded.status,
				hash = excluded.hash, contact = NULL, contact_ref = excluded.contact_ref, desired_hash = NULL, desired = NULL,
				source_hash = excluded.source_hash`
	auditInsert = `INSERT INTO changes (id, run_id, action, key, uuid, status, applied, reason, old, new) VALUES `
	// storedContact is an entry's emitted content, wherever it is kept.
	storedContact = `coalesce(contact, (SELECT new FROM changes WHERE changes.id = entries.contact_ref))`
)

func valuesList(columns, rows int) string {
	one := "(?" + strings.Repeat(", ?", columns-1) + ")"
	return one + strings.Repeat(", "+one, rows-1)
}

// Boxed constants: a string converted to an interface allocates, these do
// once.
var (
	boxBound   driver.Value = connector.EntryBound
	boxPending driver.Value = connector.EntryPending
	boxCreate  driver.Value = string(connector.ActionCreate)
)

func newApplier(ctx context.Context, conn driver.Conn, job string, runID int64) (*applier, error) {
	a := &applier{ctx: ctx, conn: conn, job: job, runID: runID}
	prep := []struct {
		st *driver.Stmt
		q  string
	}{
		{&a.inOrder.one, createInsert + valuesList(createColumns, 1) + createConflict},
		{&a.inOrder.many, createInsert + valuesList(createColumns, createBatch) + createConflict},
		// An update keeps the entry's UUID and status unless it learns a UUID.
		{&a.update, `INSERT INTO entries (job, key, uuid, status, hash, contact_ref, source_hash) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (job, key) DO UPDATE SET
				uuid = CASE WHEN excluded.uuid <> '' THEN excluded.uuid ELSE entries.uuid END,
				status = CASE WHEN excluded.uuid <> '' OR entries.uuid <> '' THEN 'bound' ELSE entries.status END,
				hash = excluded.hash, contact = NULL, contact_ref = excluded.contact_ref, desired_hash = NULL, desired = NULL,
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
		{&a.bind, `INSERT INTO entries (job, key, uuid, status, hash, contact_ref, source_hash) VALUES (?1, ?2, ?3, 'bound', ?4, ?5, ?7)
			ON CONFLICT (job, key) DO UPDATE SET uuid = excluded.uuid, status = 'bound',
				hash = CASE WHEN ?6 THEN excluded.hash ELSE entries.hash END,
				contact = CASE WHEN ?6 THEN NULL ELSE entries.contact END,
				contact_ref = CASE WHEN ?6 THEN excluded.contact_ref ELSE entries.contact_ref END,
				source_hash = CASE WHEN ?6 THEN excluded.source_hash ELSE entries.source_hash END`},
		{&a.touch, `UPDATE entries SET source_hash = ? WHERE job = ? AND key = ?`},
		{&a.remove, `DELETE FROM entries WHERE job = ? AND key = ? RETURNING uuid, ` + storedContact},
		{&a.get, `SELECT ` + storedContact + ` FROM entries WHERE job = ? AND key = ?`},
		{&a.audit, auditInsert + valuesList(auditColumns, 1)},
		{&a.auditMany, auditInsert + valuesList(auditColumns, auditBatch)},
	}
	pc, ok := conn.(driver.ConnPrepareContext)
	if !ok {
		return nil, errors.New("prepare: the driver connection cannot prepare with a context")
	}
	for _, p := range prep {
		st, err := pc.PrepareContext(ctx, p.q)
		if err != nil {
			a.close()
			return nil, fmt.Errorf("prepare: %w", err)
		}
		*p.st = st
	}
	// The ids SQLite would choose: one more than the largest.
	last, err := pc.PrepareContext(ctx, `SELECT coalesce(max(id), 0) FROM changes`)
	if err != nil {
		a.close()
		return nil, fmt.Errorf("prepare: %w", err)
	}
	defer last.Close()
	found, err := a.queryRow(last, nil, 1)
	if err == nil && !found {
		err = errNoRow
	}
	if err != nil {
		a.close()
		return nil, fmt.Errorf("last audit row: %w", err)
	}
	id, ok := a.row[0].(int64)
	if !ok {
		a.close()
		return nil, fmt.Errorf("last audit row: unexpected %T", a.row[0])
	}
	a.lastID, a.firstID = id, id+1
	return a, nil
}

func (a *applier) close() {
	for _, st := range []driver.Stmt{a.inOrder.one, a.inOrder.many, a.update, a.desired, a.bind, a.touch, a.remove, a.get, a.audit, a.auditMany, a.unCreate, a.unAudit,
		a.later.q.one, a.later.q.many, a.later.move, a.later.clear} {
		if st != nil {
			_ = st.Close()
		}
	}
}

// exec runs st with vals. It goes through the driver's query path, which
// binds and steps in one cgo crossing where its exec path crosses once per
// value; a statement without RETURNING is complete after its first step.
func (a *applier) exec(st driver.Stmt, vals []driver.NamedValue) error {
	rows, err := st.(driver.StmtQueryContext).QueryContext(a.ctx, vals)
	if err != nil {
		return err
	}
	return rows.Close()
}

// queryRow runs st with vals and reads its first row into a.row; found is
// false when it returned none.
func (a *applier) queryRow(st driver.Stmt, vals []driver.NamedValue, columns int) (found bool, err error) {
	rows, err := st.(driver.StmtQueryContext).QueryContext(a.ctx, vals)
	if err != nil {
		return false, err
	}
	a.row = [2]driver.Value{}
	err = rows.Next(a.row[:columns])
	if errors.Is(err, io.EOF) {
		return false, rows.Close()
	}
	if err != nil {
		_ = rows.Close()
		return false, err
	}
	return true, rows.Close()
}

// values fills a.args with vals in parameter order.
func (a *applier) values(vals ...driver.Value) []driver.NamedValue {
	a.args = a.args[:0]
	for i, v := range vals {
		a.args = append(a.args, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	return a.args
}

// appendRow appends one row's values to a batch, numbering them on from
// the batch's last.
func appendRow(batch []driver.NamedValue, vals ...driver.Value) []driver.NamedValue {
	for _, v := range vals {
		batch = append(batch, driver.NamedValue{Ordinal: len(batch) + 1, Value: v})
	}
	return batch
}

// hashBytes stores h in a.hashes and returns it as a value (nil: NULL for
// the zero hash). The driver copies values when it binds them, and a
// chunk of a.hashes is never written again once handed out.
func (a *applier) hashBytes(h connector.Hash) driver.Value {
	if h.IsZero() {
		return nil
	}
	if cap(a.hashes)-len(a.hashes) < len(h) {
		a.hashes = make([]byte, 0, 256*len(h))
	}
	n := len(a.hashes)
	a.hashes = append(a.hashes, h[:]...)
	return a.hashes[n : n+len(h) : n+len(h)]
}

// contactText encodes c for the contact and audit columns (TEXT, so that
// SQLite's JSON functions read them). Marshal's buffer is new and never
// written again, so the string shares it.
func contactText(c *connector.Contact) driver.Value {
	if c == nil {
		return nil
	}
	return jsonText(c.Marshal())
}

// jsonText is an encoded contact as a TEXT value, sharing b, which must
// never be written again.
func jsonText(b []byte) driver.Value {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// nextID is the id the next audit row queued gets.
func (a *applier) nextID() driver.Value { return a.lastID + 1 }

func (a *applier) queueAudit(id, action, key, uuid, status driver.Value, applied bool, reason string, old, new driver.Value) error {
	var r driver.Value = reason
	a.lastID++
	a.pending = appendRow(a.pending, id, a.runID, action, key, uuid, status, applied, r, old, new)
	if len(a.pending) < auditColumns*auditBatch {
		return nil
	}
	// The audit rows queued may reference changes not inserted yet; the
	// order of the two tables' inserts does not matter to either.
	if err := a.exec(a.auditMany, a.pending); err != nil {
		return fmt.Errorf("audit of the last %d changes: %w", auditBatch, err)
	}
	clear(a.pending)
	a.pending = a.pending[:0]
	return nil
}

// flushAudit inserts the audit rows not inserted yet, one by one: at the
// end of the changes, after flushCreates, and before reading an entry's
// content, which may be one of them.
func (a *applier) flushAudit() error {
	for i := 0; i < len(a.pending); i += auditColumns {
		row := a.values(valuesOf(a.pending[i : i+auditColumns])...)
		if err := a.exec(a.audit, row); err != nil {
			return err
		}
	}
	clear(a.pending)
	a.pending = a.pending[:0]
	return nil
}

func valuesOf(nv []driver.NamedValue) []driver.Value {
	out := make([]driver.Value, len(nv))
	for i := range nv {
		out[i] = nv[i].Value
	}
	return out
}

// changesError is an error that already names the changes it is about.
type changesError struct{ error }

// createQueue holds creates until a batch is full.
type createQueue struct {
	vals      []driver.NamedValue // createColumns values per pending create
	seq       []int               // change numbers of the pending creates, for errors
	keys      []string
	one, many driver.Stmt // insert one row, createBatch rows
}

func (q *createQueue) add(seq int, key string, vals ...driver.Value) {
	q.vals = appendRow(q.vals, vals...)
	q.seq = append(q.seq, seq)
	q.keys = append(q.keys, key)
}

// flushCreates inserts every pending create, the ones waiting for key
// order included: every statement but a create's must see them.
func (a *applier) flushCreates() error {
	if err := a.flushQueue(&a.inOrder); err != nil {
		return err
	}
	return a.settleLater()
}

// flushQueue inserts the creates of q: full batches in one statement, the
// remainder one by one. A batch that fails is tried again row by row while
// the transaction is still open, so that the error names the change that
// failed, as it did when every create was its own statement.
func (a *applier) flushQueue(q *createQueue) error {
	for len(q.seq) > 0 {
		n := min(len(q.seq), createBatch)
		vals := q.vals[:n*createColumns]
		var err error
		if n == createBatch {
			err = a.exec(q.many, vals)
		}
		if n < createBatch || err != nil {
			if err != nil && a.rolledBack() {
				return changesError{fmt.Errorf("changes %d to %d (creates): %w", q.seq[0], q.seq[n-1], err)}
			}
			for i := range n {
				row := a.values(valuesOf(vals[i*createColumns : (i+1)*createColumns])...)
				if err := a.exec(q.one, row); err != nil {
					return changesError{fmt.Errorf("change %d (%s of key %q): %w", q.seq[i], connector.ActionCreate, q.keys[i], err)}
				}
			}
			if err != nil {
				return changesError{fmt.Errorf("changes %d to %d (creates): %w", q.seq[0], q.seq[n-1], err)}
			}
		}
		clear(q.vals[:n*createColumns])
		q.vals = append(q.vals[:0], q.vals[n*createColumns:]...)
		q.seq = append(q.seq[:0], q.seq[n:]...)
		q.keys = append(q.keys[:0], q.keys[n:]...)
	}
	return nil
}

// rolledBack reports whether SQLite ended the transaction itself, as it
// does on some I/O errors: a statement run then would commit on its own.
func (a *applier) rolledBack() bool {
	ac, ok := a.conn.(interface{ AutoCommit() bool })
	return !ok || ac.AutoCommit()
}

// apply stores one change (change number seq of the run) in the entries
// and in the audit.
func (a *applier) apply(seq int, rec *connector.ChangeRecord) error {
	if rec.Key == "" {
		return errors.New("no key")
	}
	if rec.Action == connector.ActionCreate && rec.Applied && rec.New != nil {
		return a.applyCreate(seq, rec)
	}
	// Every other statement sees the creates before it.
	if err := a.flushCreates(); err != nil {
		return err
	}
	// The new content is encoded and hashed once, for the entry and the
	// audit row.
	var newJSON, newHash driver.Value
	if rec.New != nil {
		newJSON = contactText(rec.New)
		newHash = a.hashBytes(contactHash(rec))
	}
	var key driver.Value = rec.Key
	ref := a.nextID()
	uuid, status := rec.UUID, ""
	old := rec.Old
	var err error
	switch {
	case rec.Action == connector.ActionTouch:
		if rec.SourceHash.IsZero() {
			return errors.New("touch without a source hash")
		}
		return a.exec(a.touch, a.values(a.hashBytes(rec.SourceHash), a.job, key))

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
			var found bool
			found, err = a.queryRow(a.desired, a.values(a.job, key, rec.UUID, newHash, newJSON), 1)
			if err == nil && !found {
				err = errNoRow
			}
			if err == nil && uuid == "" {
				uuid, err = textValue(a.row[0])
			}
		}

	case rec.Action == connector.ActionCreate || rec.Action == connector.ActionUpdate:
		if rec.New == nil {
			return errors.New("applied without new content")
		}
		if old == nil && rec.Action == connector.ActionUpdate {
			if old, err = a.stored(key); err != nil {
				return err
			}
		}
		status = connector.EntryPending
		if rec.UUID != "" {
			status = connector.EntryBound
		}
		var found bool
		found, err = a.queryRow(a.update, a.values(a.job, key, rec.UUID, status, newHash, ref, a.hashBytes(rec.SourceHash)), 2)
		if err == nil && !found {
			err = errNoRow
		}
		if err == nil {
			if uuid, err = textValue(a.row[0]); err == nil {
				status, err = textValue(a.row[1])
			}
		}

	case rec.Action == connector.ActionDelete:
		status = "deleted"
		if err = a.flushAudit(); err != nil {
			return fmt.Errorf("audit of the changes before: %w", err)
		}
		var found bool
		found, err = a.queryRow(a.remove, a.values(a.job, key), 2)
		if err == nil && found { // not found: already gone, the audit still records the delete
			var got string
			if got, err = textValue(a.row[0]); err == nil {
				if uuid == "" {
					uuid = got
				}
				if old == nil {
					old, err = scanContact(bytesValue(a.row[1]))
				}
			}
		}

	case rec.Action == connector.ActionBind:
		if rec.UUID == "" {
			return errors.New("bind without a UUID")
		}
		if old == nil {
			if old, err = a.stored(key); err != nil {
				return err
			}
		}
		status = connector.EntryBound
		var contentRef driver.Value
		if rec.New != nil {
			contentRef = ref
		}
		err = a.exec(a.bind, a.values(a.job, key, rec.UUID, newHash, contentRef, rec.New != nil, a.hashBytes(rec.SourceHash)))
	}
	if err != nil {
		return err
	}
	var oldJSON driver.Value
	if old != nil {
		oldJSON = contactText(old)
	}
	return a.queueAudit(ref, string(rec.Action), key, uuid, status, rec.Applied, rec.Reason, oldJSON, newJSON)
}

// errNoRow stands for database/sql's ErrNoRows where a statement with
// RETURNING returned nothing.
var errNoRow = errors.New("sql: no rows in result set")

// contactHash is the hash of rec.New, taken from the engine when it has it.
func contactHash(rec *connector.ChangeRecord) connector.Hash {
	if !rec.NewHash.IsZero() {
		return rec.NewHash
	}
	return rec.New.Hash()
}

// applyCreate queues an applied create; its entry is inserted with the
// creates next to it.
func (a *applier) applyCreate(seq int, rec *connector.ChangeRecord) error {
	var key, uuid driver.Value = rec.Key, rec.UUID
	status := boxPending
	if rec.UUID != "" {
		status = boxBound
	}
	ref := a.nextID()
	q, err := a.queueFor(rec.Key)
	if err != nil {
		return err
	}
	q.add(seq, rec.Key, a.job, key, uuid, status, a.hashBytes(contactHash(rec)), ref, a.hashBytes(rec.SourceHash))
	if len(q.seq) >= createBatch {
		if err := a.flushQueue(q); err != nil {
			return err
		}
	}
	newJSON := jsonText(rec.NewJSON) // the engine's encoding
	if rec.NewJSON == nil {
		newJSON = contactText(rec.New)
	}
	return a.queueAudit(ref, boxCreate, key, uuid, status, true, rec.Reason, contactText(rec.Old), newJSON)
}

// stored returns an entry's last emitted content, so that the audit shows
// the old values of a change whose caller did not pass them.
func (a *applier) stored(key driver.Value) (*connector.Contact, error) {
	// The content may be in an audit row still queued.
	if err := a.flushAudit(); err != nil {
		return nil, fmt.Errorf("audit of the changes before: %w", err)
	}
	found, err := a.queryRow(a.get, a.values(a.job, key), 1)
	if err != nil || !found {
		return nil, err
	}
	return scanContact(bytesValue(a.row[0]))
}

func textValue(v driver.Value) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("unexpected %T for a text column", v)
}

// bytesValue returns a text or blob column's bytes; nil for NULL.
func bytesValue(v driver.Value) []byte {
	switch v := v.(type) {
	case string:
		return []byte(v)
	case []byte:
		return v
	}
	return nil
}
