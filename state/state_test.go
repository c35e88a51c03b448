package state

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// t0 is the fake clock's start: tests never depend on the real time.
var t0 = time.Date(2025, 3, 14, 2, 0, 0, 123456789, time.UTC)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// openTest opens a fresh state file in a folder that does not exist yet,
// with a fake clock set to t0.
func openTest(t testing.TB) (*DB, *clock) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "var", "state.db")
	d, err := Open(context.Background(), path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	c := &clock{t: t0}
	d.now = c.now
	return d, c
}

func mkContact(name string, extra ...string) connector.Contact {
	var c connector.Contact
	c[connector.DisplayName] = name
	c[connector.Phone1] = "+33 1 23 45 67 89"
	c[connector.Phone1Type] = "work"
	for i, v := range extra {
		c[connector.FirstName+connector.Field(i)] = v
	}
	return c
}

func ptr(c connector.Contact) *connector.Contact { return &c }

func TestOpenCreatesFileAndFolder(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "lib", "contactsync")
	path := filepath.Join(dir, "state.db")
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.StartRun(ctx, connector.Run{Job: "j"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want fs.FileMode
	}{
		{dir, 0o700 | fs.ModeDir},
		{path, 0o600},
		{path + "-wal", 0o600},
		{path + "-shm", 0o600},
	} {
		t.Run(filepath.Base(tc.name), func(t *testing.T) {
			fi, err := os.Stat(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode() & (fs.ModeDir | fs.ModePerm); got != tc.want {
				t.Errorf("mode %v, want %v", got, tc.want)
			}
		})
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPageSize: a file this version creates has 16 KB pages; a file made
// with SQLite's default keeps its 4 KB pages and works as before, since a
// WAL file cannot change its page size and converting one is the admin's
// call (docs/state.md).
func TestPageSize(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		old  bool // the file exists, made with SQLite's default page size
		want int
	}{
		{"new file", false, pageSize},
		{"existing file", true, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if tc.old {
				db, err := sql.Open("sqlite3", path+"?_journal_mode=WAL")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := db.ExecContext(ctx, `CREATE TABLE t (x)`); err != nil {
					t.Fatal(err)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			d, err := Open(ctx, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var got int
			if err := d.r.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("page_size %d, want %d", got, tc.want)
			}
			var mode string
			if err := d.r.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
				t.Fatal(err)
			}
			if mode != "wal" {
				t.Errorf("journal_mode %q, want wal", mode)
			}
			if _, err := d.StartRun(ctx, connector.Run{Job: "j", StartedAt: t0}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	version := func(d *DB) int {
		t.Helper()
		var v int
		if err := d.r.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := version(d); got != SchemaVersion() {
		t.Fatalf("new file: schema version %d, want %d", got, SchemaVersion())
	}
	id, err := d.StartRun(ctx, connector.Run{Job: "j", StartedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	t.Run("reopen keeps data", func(t *testing.T) {
		d, err := Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if got := version(d); got != SchemaVersion() {
			t.Errorf("schema version %d, want %d", got, SchemaVersion())
		}
		runs, err := d.Runs(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 1 || runs[0].ID != id {
			t.Errorf("runs after reopen: %+v", runs)
		}
	})

	t.Run("newer schema refused", func(t *testing.T) {
		d, err := Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.w.ExecContext(ctx, `UPDATE schema_version SET version = ?`, SchemaVersion()+1); err != nil {
			t.Fatal(err)
		}
		d.Close()
		_, err = Open(ctx, path, nil)
		want := "has schema version " + strconv.Itoa(SchemaVersion()+1) + ", newer than this contactsync knows"
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Fatalf("error %v, want one naming %s and %q", err, path, want)
		}
	})

	t.Run("opened beside a writer", func(t *testing.T) {
		// A sync holds the writer for the whole pull: opening to read (history,
		// show) must not wait for it, as it would fail after busyTimeout.
		path := filepath.Join(t.TempDir(), "state.db")
		d, err := Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		conn, err := d.w.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tx, err := conn.BeginTx(ctx, nil) // immediate: the write lock
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		reader, err := Open(ctx, path, nil)
		if err != nil {
			t.Fatalf("open beside a writer: %v", err)
		}
		defer reader.Close()
		if _, err := reader.Runs(ctx, "", 0); err != nil {
			t.Errorf("read beside a writer: %v", err)
		}
	})

	t.Run("not a database", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "state.db")
		if err := os.WriteFile(bad, []byte(strings.Repeat("not sqlite\n", 200)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, bad, nil)
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Fatalf("error %v, want one naming %s", err, bad)
		}
	})

	t.Run("question mark in path", func(t *testing.T) {
		_, err := Open(ctx, filepath.Join(t.TempDir(), "a?b.db"), nil)
		if err == nil {
			t.Fatal("no error")
		}
	})
}

func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	release, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode %v, want 0600", fi.Mode().Perm())
	}

	_, err = Lock(path)
	want := path + " is in use by another contactsync process (pid " + strconv.Itoa(os.Getpid()) + ")"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second lock: error %v, want %q", err, want)
	}

	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatalf("second release: %v", err)
	}
	release2, err := Lock(path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	if err := release2(); err != nil {
		t.Fatal(err)
	}
}

func TestRunsLifecycle(t *testing.T) {
	ctx := context.Background()
	d, clk := openTest(t)

	a, err := d.StartRun(ctx, connector.Run{Job: "a", Kind: "sync", StartedAt: t0, Trigger: "schedule", ConfigHash: "c1", Source: "ldap://x"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.StartRun(ctx, connector.Run{Job: "b", Kind: "dry_run", StartedAt: t0.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.StartRun(ctx, connector.Run{Job: "a", Kind: "sync", StartedAt: t0.Add(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}

	fin := connector.Run{ID: b, Job: "b", Kind: "dry_run", Status: connector.StatusDryRun, StartedAt: t0.Add(time.Second),
		FinishedAt: t0.Add(3 * time.Second), Counts: connector.Counts{Created: 2, Updated: 1, Source: 7, Adopted: 1}}
	if err := d.FinishRun(ctx, fin); err != nil {
		t.Fatal(err)
	}

	errCases := []struct {
		name string
		run  connector.Run
		is   error
	}{
		{"unknown run", connector.Run{ID: 999, Job: "a", Status: connector.StatusOK}, ErrNotFound},
		{"running is not final", connector.Run{ID: a, Job: "a", Status: connector.StatusRunning}, nil},
		{"no status", connector.Run{ID: a, Job: "a"}, nil},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			err := d.FinishRun(ctx, tc.run)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v, want %v", err, tc.is)
			}
		})
	}

	clk.t = t0.Add(time.Hour)
	got, err := d.RecoverInterrupted(ctx, "interrupted: the process stopped")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != a || got[1].ID != c {
		t.Fatalf("recovered %+v, want runs %d and %d", got, a, c)
	}
	for _, r := range got {
		if r.Status != connector.StatusFailed || r.Reason != "interrupted: the process stopped" || !r.FinishedAt.Equal(clk.t) {
			t.Errorf("recovered run %+v", r)
		}
	}
	if r := got[0]; r.Trigger != "schedule" || r.ConfigHash != "c1" || r.Source != "ldap://x" || !r.StartedAt.Equal(t0) {
		t.Errorf("recovered run lost its fields: %+v", r)
	}
	again, err := d.RecoverInterrupted(ctx, "x")
	if err != nil || len(again) != 0 {
		t.Fatalf("second recovery: %v %+v", err, again)
	}

	for _, tc := range []struct {
		job   string
		limit int
		want  []int64
	}{
		{"", 0, []int64{c, b, a}},
		{"", 2, []int64{c, b}},
		{"a", 0, []int64{c, a}},
		{"b", 5, []int64{b}},
		{"none", 0, nil},
	} {
		t.Run("runs "+tc.job+"/"+strconv.Itoa(tc.limit), func(t *testing.T) {
			runs, err := d.Runs(ctx, tc.job, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, r := range runs {
				ids = append(ids, r.ID)
			}
			if !reflect.DeepEqual(ids, tc.want) {
				t.Errorf("ids %v, want %v", ids, tc.want)
			}
		})
	}

	run, _, _, err := d.RunDetail(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if !run.StartedAt.Equal(fin.StartedAt) || !run.FinishedAt.Equal(fin.FinishedAt) {
		t.Errorf("times %v %v, want %v %v", run.StartedAt, run.FinishedAt, fin.StartedAt, fin.FinishedAt)
	}
	run.StartedAt, run.FinishedAt = fin.StartedAt, fin.FinishedAt
	if !reflect.DeepEqual(run, fin) {
		t.Errorf("run detail\n got %+v\nwant %+v", run, fin)
	}
	if _, _, _, err := d.RunDetail(ctx, 12345); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown run: error %v, want ErrNotFound", err)
	}
}

func TestApprovals(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t)
	approved := func(job string) bool {
		t.Helper()
		ok, err := d.Approved(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	commit := func(job string, consume bool) {
		t.Helper()
		id, err := d.StartRun(ctx, connector.Run{Job: job})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Commit(ctx, &connector.Commit{Run: connector.Run{ID: id, Job: job, Status: connector.StatusOK}, ConsumeApproval: consume}); err != nil {
			t.Fatal(err)
		}
	}
	if approved("a") {
		t.Fatal("approved before Approve")
	}
	if err := d.Approve(ctx, "a", "alice"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func()
		a, b bool
	}{
		{"approved", func() {}, true, false},
		{"commit without consuming", func() { commit("a", false) }, true, false},
		{"other job consumes its own", func() { commit("b", true) }, true, false},
		{"consumed", func() { commit("a", true) }, false, false},
		{"approve b", func() {
			if err := d.Approve(ctx, "b", "bob"); err != nil {
				t.Fatal(err)
			}
		}, false, true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do()
			if got := approved("a"); got != s.a {
				t.Errorf("job a approved %v, want %v", got, s.a)
			}
			if got := approved("b"); got != s.b {
				t.Errorf("job b approved %v, want %v", got, s.b)
			}
		})
	}
	var by string
	var run int64
	if err := d.r.QueryRowContext(ctx, `SELECT approved_by, used_by_run FROM approvals WHERE job = 'a'`).Scan(&by, &run); err != nil {
		t.Fatal(err)
	}
	if by != "alice" || run == 0 {
		t.Errorf("approval history: by %q run %d", by, run)
	}
}

func TestJournal(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t)
	c1, c2 := mkContact("Zoë \"Z\" Müller"), mkContact("Line\nbreak")
	intents := []connector.JournalEntry{
		{RunID: 1, Key: "k1", Op: connector.ActionCreate, Contact: c1},
		{RunID: 1, Key: "k2", Op: connector.ActionUpdate, UUID: "u2", Contact: c2},
	}
	if err := d.Intend(ctx, "a", intents); err != nil {
		t.Fatal(err)
	}
	if err := d.Intend(ctx, "b", intents[:1]); err != nil {
		t.Fatal(err)
	}
	answers := []connector.JournalEntry{
		{RunID: 1, Key: "k1", Op: connector.ActionCreate, UUID: "u1", Contact: c1},
		// An answer that had no intent is kept as well.
		{RunID: 1, Key: "k3", Op: connector.ActionCreate, UUID: "u3", Contact: c2},
	}
	if err := d.Answer(ctx, "a", answers); err != nil {
		t.Fatal(err)
	}
	want := []connector.JournalEntry{
		{RunID: 1, Key: "k1", Op: connector.ActionCreate, UUID: "u1", Contact: c1},
		intents[1],
		answers[1],
	}
	got, err := d.Open(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("journal\n got %+v\nwant %+v", got, want)
	}

	id, err := d.StartRun(ctx, connector.Run{Job: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, &connector.Commit{Run: connector.Run{ID: id, Job: "a", Status: connector.StatusOK}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		job  string
		want int
	}{{"a", 0}, {"b", 1}} {
		t.Run("after commit of a: "+tc.job, func(t *testing.T) {
			got, err := d.Open(ctx, tc.job)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("%d open entries, want %d", len(got), tc.want)
			}
		})
	}
}

func TestOpenWarnsAboutAWideMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	var logs strings.Builder
	d, err := Open(context.Background(), path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !strings.Contains(logs.String(), "readable by other users") {
		t.Errorf("no warning logged; logs:\n%s", logs.String())
	}
}
