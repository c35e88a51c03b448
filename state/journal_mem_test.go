package state

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

// deletedFiles counts the process's open files that were unlinked: SQLite
// opens its temporary files so (O_TMPFILE, or unlinked after creation).
func deletedFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); strings.HasSuffix(l, "(deleted)") {
			n++
		}
	}
	return n
}

// TestStatementJournalInMemory: a commit of many creates never spills its
// statement journals into a temporary file (it did past 18,000 audit rows,
// and wrote 1.17 GB there for 1,000,000), and retention's temporary
// structures are back on files once the transaction began.
func TestStatementJournalInMemory(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t)
	before := deletedFiles(t)
	id, err := d.StartRun(ctx, connector.Run{Job: "bench"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Stage(ctx, connector.Run{ID: id, Job: "bench"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Rollback()
	if err := st.Apply(ctx, recordsIter(benchRecords(40000))); err != nil {
		t.Fatal(err)
	}
	if n := deletedFiles(t) - before; n != 0 {
		t.Errorf("%d temporary files open after staging 40,000 creates, want 0", n)
	}
	var store int
	if err := st.(*stage).tx.QueryRowContext(ctx, `PRAGMA temp_store`).Scan(&store); err != nil {
		t.Fatal(err)
	}
	if store != 0 {
		t.Errorf("temp_store %d inside the run's transaction, want 0 (default)", store)
	}
}

// TestStageCache: the writer's page cache is the stage's size while a run
// writes, and SQLite's default again once the run commits or rolls back,
// so that a daemon does not hold the larger cache between runs.
func TestStageCache(t *testing.T) {
	ctx := context.Background()
	cacheOf := func(t *testing.T, q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		t.Helper()
		var n int
		if err := q.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, end := range []string{"commit", "rollback"} {
		t.Run(end, func(t *testing.T) {
			d, _ := openTest(t)
			st, err := d.Stage(ctx, connector.Run{Job: "bench"})
			if err != nil {
				t.Fatal(err)
			}
			if got := cacheOf(t, st.(*stage).tx); got != -stageCacheKiB {
				t.Errorf("cache_size %d while the stage is open, want %d", got, -stageCacheKiB)
			}
			if err := st.Apply(ctx, recordsIter(benchRecords(100))); err != nil {
				t.Fatal(err)
			}
			if end == "commit" {
				err = st.Commit(ctx, &connector.Commit{Run: connector.Run{Job: "bench", Status: connector.StatusOK}})
			} else {
				err = st.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cacheOf(t, d.w); got != -defaultCacheKiB {
				t.Errorf("writer's cache_size %d after the %s, want %d", got, end, -defaultCacheKiB)
			}
		})
	}
}
