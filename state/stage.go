package state

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/contactsync/contactsync/connector"
)

var _ connector.Stager = (*DB)(nil)

// stage is a run's write transaction, open while the engine still plans or
// the sink still writes, so that SQLite's work overlaps theirs. It holds
// the only writer connection until Commit or Rollback.
//
// The applier's statements are prepared on the transaction's driver
// connection; every use of them happens inside a conn.Raw call on that
// same connection, which nothing else uses while the stage is open.
type stage struct {
	d      *DB
	conn   *sql.Conn
	tx     *sql.Tx
	a      *applier
	run    connector.Run // with its id
	newRun bool
	n      int // changes applied so far
	// failed: a change could not be applied, and the transaction may hold
	// half of it; the stage can only be rolled back.
	failed bool
	done   bool
	start  time.Time
	wb     *writeback // flushes the WAL while the stage writes it
}

// Stage opens the write transaction of run (inserting the run row first
// when run.ID is 0). What is applied through it is seen by nobody until
// Commit, and discarded by Rollback or by the death of the process.
func (d *DB) Stage(ctx context.Context, run connector.Run) (connector.Stage, error) {
	s, err := d.stage(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("state: stage run %d of job %q: %w", run.ID, run.Job, describeBusy(err))
	}
	return s, nil
}

func (d *DB) stage(ctx context.Context, run connector.Run) (s *stage, err error) {
	if run.Job == "" {
		return nil, errors.New("no job name")
	}
	conn, err := d.w.Conn(ctx)
	if err != nil {
		return nil, err
	}
	// The transaction outlives calls with different contexts, and a
	// cancelled one would make database/sql roll it back under the
	// applier's feet: cancellation is checked between changes, and the
	// engine rolls back.
	tx, err := beginWithJournalInMemory(context.WithoutCancel(ctx), conn, d.log)
	if err != nil {
		releaseStageConn(conn, d.log)
		return nil, err
	}
	s = &stage{d: d, conn: conn, tx: tx, run: run, newRun: run.ID == 0, start: time.Now()}
	s.wb = startWriteback(d.path+"-wal", 200*time.Millisecond, writebackStep)
	defer func() {
		if err != nil {
			_ = s.Rollback()
		}
	}()
	if s.newRun {
		if s.run.ID, err = d.insertRun(ctx, tx, &s.run, connector.StatusRunning); err != nil {
			return nil, err
		}
	}
	err = conn.Raw(func(dc any) error {
		s.a, err = newApplier(context.WithoutCancel(ctx), dc.(driver.Conn), run.Job, s.run.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *stage) usable() error {
	switch {
	case s.done:
		return errors.New("the stage is closed")
	case s.failed:
		return errors.New("an earlier change failed: the stage can only be rolled back")
	}
	return nil
}

// Apply applies changes as Commit would, without committing them.
func (s *stage) Apply(ctx context.Context, changes func(yield func(*connector.ChangeRecord) error) error) error {
	if err := s.apply(ctx, changes, false); err != nil {
		return fmt.Errorf("state: stage run %d of job %q: %w", s.run.ID, s.run.Job, err)
	}
	return nil
}

// Revert undoes an applied create of key, a key the state did not hold
// when the stage opened: its entry and its audit row go. The audit id the
// row had stays unused, as a rolled-back insert would leave it.
func (s *stage) Revert(ctx context.Context, key string) error {
	if err := s.usable(); err != nil {
		return fmt.Errorf("state: stage run %d of job %q: revert key %q: %w", s.run.ID, s.run.Job, key, err)
	}
	err := s.conn.Raw(func(any) error { return s.a.revert(key) })
	if err != nil {
		s.failed = true
		return fmt.Errorf("state: stage run %d of job %q: revert key %q: %w", s.run.ID, s.run.Job, key, err)
	}
	return nil
}

var _ connector.CreateRecaller = (*stage)(nil)

// Created reads back the creates applied through the stage, from their
// audit rows, in the order applied; reverted ones are gone with their row.
func (s *stage) Created(ctx context.Context, fn func(key string, c *connector.Contact) error) error {
	if err := s.usable(); err != nil {
		return fmt.Errorf("state: stage run %d of job %q: read the creates back: %w", s.run.ID, s.run.Job, err)
	}
	err := s.conn.Raw(func(any) error {
		if err := s.a.flushAudit(); err != nil {
			// The queued audit rows may be half written.
			s.failed = true
			return fmt.Errorf("audit of the changes before: %w", err)
		}
		return s.a.created(ctx, fn)
	})
	if err != nil {
		return fmt.Errorf("state: stage run %d of job %q: read the creates back: %w", s.run.ID, s.run.Job, err)
	}
	return nil
}

// created reads the run's audit rows of creates, once they are flushed.
func (a *applier) created(ctx context.Context, fn func(key string, c *connector.Contact) error) error {
	if a.lastID < a.firstID {
		return nil
	}
	pc := a.conn.(driver.ConnPrepareContext)
	st, err := pc.PrepareContext(ctx, `SELECT key, new FROM changes
		WHERE id BETWEEN ? AND ? AND run_id = ? AND action = 'create' ORDER BY id`)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer st.Close()
	rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, a.values(a.firstID, a.lastID, a.runID))
	if err != nil {
		return err
	}
	defer rows.Close()
	dest := make([]driver.Value, 2)
	for {
		if err := rows.Next(dest); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		key, _ := dest[0].(string)
		c, err := connector.UnmarshalContact(bytesValue(dest[1]))
		if err != nil {
			return fmt.Errorf("create of key %q: %w", key, err)
		}
		if err := fn(key, &c); err != nil {
			return err
		}
	}
}

// apply runs changes through the applier; last flushes what it queued.
func (s *stage) apply(ctx context.Context, changes func(yield func(*connector.ChangeRecord) error) error, last bool) error {
	if err := s.usable(); err != nil {
		return err
	}
	err := s.conn.Raw(func(any) error {
		if changes != nil {
			var applyErr error
			err := changes(func(rec *connector.ChangeRecord) error {
				if s.n%ctxCheckEvery == 0 {
					if err := ctx.Err(); err != nil {
						applyErr = err
						return err
					}
				}
				s.n++
				if err := s.a.apply(s.n, rec); err != nil {
					var named changesError
					if errors.As(err, &named) {
						applyErr = named.error
					} else {
						applyErr = fmt.Errorf("change %d (%s of key %q): %w", s.n, rec.Action, rec.Key, err)
					}
					return applyErr
				}
				return nil
			})
			if applyErr != nil {
				return applyErr
			}
			if err != nil {
				return fmt.Errorf("changes after %d: %w", s.n, err)
			}
		}
		if !last {
			return nil
		}
		if err := s.a.flushCreates(); err != nil {
			return err.(changesError).error
		}
		if err := s.a.flushAudit(); err != nil {
			return fmt.Errorf("audit of the last %d changes: %w", s.n%auditBatch, err)
		}
		return nil
	})
	if err != nil {
		s.failed = true
	}
	return err
}

// Commit applies c.Changes after what the stage applied, then records the
// run exactly as DB.Commit does, and commits. On failure the transaction
// is rolled back.
func (s *stage) Commit(ctx context.Context, c *connector.Commit) (err error) {
	if c == nil {
		return errors.New("state: commit: nothing to commit")
	}
	job := s.run.Job
	fail := func(err error) error {
		return fmt.Errorf("state: commit run %d of job %q: %w", s.run.ID, job, err)
	}
	if err := s.usable(); err != nil {
		return fail(err)
	}
	defer func() {
		if err != nil {
			_ = s.Rollback()
			if s.newRun {
				c.Run.ID = 0
			}
		}
	}()
	if c.Run.Job != job {
		return fail(fmt.Errorf("the stage is of job %q, the commit of job %q", job, c.Run.Job))
	}
	if !finalStatus(c.Run.Status) {
		return fail(fmt.Errorf("status %q is not a final run status", c.Run.Status))
	}
	if s.newRun {
		c.Run.ID = s.run.ID
		if c.Run.StartedAt.IsZero() {
			c.Run.StartedAt = s.run.StartedAt
		}
	} else if c.Run.ID != s.run.ID {
		return fail(fmt.Errorf("the stage is of run %d, the commit of run %d", s.run.ID, c.Run.ID))
	}
	tApply := time.Now()
	if err = s.apply(ctx, c.Changes, true); err != nil {
		return fail(err)
	}
	applied := time.Since(tApply)
	tx := s.tx
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
	if err = s.d.updateRun(ctx, tx, &c.Run); err != nil {
		return fail(err)
	}
	if s.a.lastID >= s.a.firstID {
		// Before the pruning, which finds the rows of old runs so.
		if _, err = tx.ExecContext(ctx, `UPDATE runs SET first_change = ?, last_change = ? WHERE id = ?`,
			s.a.firstID, s.a.lastID, c.Run.ID); err != nil {
			return fail(fmt.Errorf("audit span: %w", err))
		}
	}
	// Retention counts from the committing run's start, so that the
	// engine's clock (a fake one in tests) decides, not this package's.
	ref := c.Run.StartedAt
	if ref.IsZero() {
		ref = s.d.now()
	}
	pruned, err := s.d.prune(ctx, tx, c.KeepDays, ref)
	if err != nil {
		return fail(err)
	}
	if _, err = tx.ExecContext(ctx, `DELETE FROM journal WHERE job = ?`, job); err != nil {
		return fail(fmt.Errorf("clear journal: %w", err))
	}
	s.closeApplier()
	// The commit syncs the WAL, then checkpoints it into the database
	// file and syncs that: flushing the database file meanwhile leaves
	// less for the last sync.
	s.wb.close()
	s.wb = startWriteback(s.d.path, 25*time.Millisecond, 0)
	tCommit := time.Now()
	err = tx.Commit()
	s.wb.close()
	s.wb = nil
	if err != nil {
		return fail(err)
	}
	s.done = true
	releaseStageConn(s.conn, s.d.log)
	s.d.log.Debug("state: run committed", "run", c.Run.ID, "job", job, "changes", s.n, "rejected", nrej,
		"pruned_rows", pruned, "duration", time.Since(s.start),
		// What the run waited for after its sink: the changes not staged
		// yet (creates out of key order among them), then SQLite's commit
		// and checkpoint.
		"final_apply", applied, "commit", time.Since(tCommit))
	return nil
}

func (s *stage) closeApplier() {
	if s.a == nil {
		return
	}
	_ = s.conn.Raw(func(any) error {
		s.a.close()
		return nil
	})
	s.a = nil
}

// Rollback discards everything the stage applied and releases the writer
// connection. It may be called any number of times, and after Commit.
func (s *stage) Rollback() error {
	if s.done {
		return nil
	}
	s.done = true
	s.wb.close()
	s.closeApplier()
	err := s.tx.Rollback()
	if errors.Is(err, sql.ErrTxDone) {
		err = nil
	}
	if cerr := releaseStageConn(s.conn, s.d.log); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state: roll back run %d of job %q: %w", s.run.ID, s.run.Job, err)
	}
	return nil
}

// revert deletes the entry of key, created in this transaction, and the
// audit row holding its content. Both statements are prepared on first
// use: a run reverts only keys a source handed over twice.
func (a *applier) revert(key string) error {
	if err := a.flushCreates(); err != nil {
		return err.(changesError).error
	}
	if err := a.flushAudit(); err != nil {
		return fmt.Errorf("audit of the changes before: %w", err)
	}
	if a.unCreate == nil {
		pc := a.conn.(driver.ConnPrepareContext)
		var err error
		if a.unCreate, err = pc.PrepareContext(a.ctx, `DELETE FROM entries WHERE job = ? AND key = ? RETURNING contact_ref`); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		if a.unAudit, err = pc.PrepareContext(a.ctx, `DELETE FROM changes WHERE id = ? AND run_id = ?`); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	found, err := a.queryRow(a.unCreate, a.values(a.job, key), 1)
	if err != nil {
		return err
	}
	if !found {
		return errors.New("no staged entry")
	}
	ref, ok := a.row[0].(int64)
	if !ok {
		return fmt.Errorf("the staged entry names no audit row (%T)", a.row[0])
	}
	return a.exec(a.unAudit, a.values(ref, a.runID))
}

// beginWithJournalInMemory begins the run's transaction with its statement
// journals in memory.
//
// A batched insert into changes needs a statement journal (it gives the
// rows their ids, and a run id that must exist): the pages it modifies that
// were there before it are copied there first. SQLite keeps that journal
// in memory up to 64 KB, then in a temporary file for the rest of the
// transaction; the audit index's page splits pass 64 KB now and then, and
// a first import of 1,000,000 entries then wrote 285,000 pages (1.17 GB)
// into /var/tmp, which the kernel wrote back to disk meanwhile. In memory
// a statement's journal is a few pages, dropped when it ends.
//
// The pager takes the journal's place from temp_store when the transaction
// begins; temp_store is set back right after, so that other temporary
// structures (retention's lists of pruned rows, up to tens of MB) go to
// files as before. Should SQLite refuse that, they stay in memory: slower
// to grow, never wrong.
//
// The page cache is also larger while the stage is open (stageCacheKiB).
func beginWithJournalInMemory(ctx context.Context, conn *sql.Conn, log *slog.Logger) (*sql.Tx, error) {
	if _, err := conn.ExecContext(ctx, `PRAGMA temp_store = MEMORY`); err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA cache_size = -%d`, stageCacheKiB)); err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `PRAGMA temp_store = DEFAULT`); err != nil {
		log.Debug("state: temporary storage left in memory for this run", "err", err)
	}
	return tx, nil
}

// stageCacheKiB is the writer's page cache while a stage is open; the
// connection goes back to SQLite's default (2 MB) when it is released.
//
// A run larger than the cache spills dirty pages into the WAL before it
// commits. When a B-tree page that went out so is changed again (the
// entries' inner pages when a sibling splits, every few thousand rows),
// SQLite overwrites its frame in place, and the commit must then read back
// every frame after the first one overwritten to recompute the WAL's
// running checksums, and write their headers again. A first import of
// 1,000,000 entries with the 2 MB cache re-read 104,861 of 112,000
// frames (430 MB) and then flushed them to disk a second time: 0.28 s of
// its 8.5 s, all of it after the pull. At 32 MB the first overwrite comes
// later or never (16 MB still re-read 98,000 frames); the cache costs up
// to 32 MB more while a run writes.
const stageCacheKiB = 32 << 10

// defaultCacheKiB is SQLite's default page cache (SQLITE_DEFAULT_CACHE_SIZE).
const defaultCacheKiB = 2000

// releaseStageConn gives the stage's connection back to the pool with the
// default page cache: shrinking the cache frees its pages, so that a
// daemon does not keep 32 MB between runs.
func releaseStageConn(conn *sql.Conn, log *slog.Logger) error {
	if _, err := conn.ExecContext(context.Background(), fmt.Sprintf(`PRAGMA cache_size = -%d`, defaultCacheKiB)); err != nil {
		log.Debug("state: page cache left at its run size", "err", err)
	}
	return conn.Close()
}
