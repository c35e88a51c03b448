package state

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestWriteback: a file is flushed once it has grown by the step, not
// before, not again while it stays the same size; a file that does not
// exist yet is waited for; close stops the goroutine.
func TestWriteback(t *testing.T) {
	var syncs atomic.Int64
	defer func(f func(*os.File) error) { syncFile = f }(syncFile)
	syncFile = func(*os.File) error { syncs.Add(1); return nil }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 10 s for %s", what)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "state.db-wal")
	wb := startWriteback(path, time.Millisecond, 1000)
	time.Sleep(20 * time.Millisecond) // no file: nothing to flush
	if n := syncs.Load(); n != 0 {
		t.Fatalf("%d flushes of a missing file", n)
	}
	if err := os.WriteFile(path, make([]byte, 500), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // under the step
	if n := syncs.Load(); n != 0 {
		t.Fatalf("%d flushes under the step", n)
	}
	if err := os.WriteFile(path, make([]byte, 1500), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("a flush past the step", func() bool { return syncs.Load() == 1 })
	time.Sleep(20 * time.Millisecond) // same size: no more
	if n := syncs.Load(); n != 1 {
		t.Fatalf("%d flushes, want 1 while the file stays the same", n)
	}
	wb.close()
	if err := os.WriteFile(path, make([]byte, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if n := syncs.Load(); n != 1 {
		t.Fatalf("%d flushes after close", n)
	}
	(*writeback)(nil).close() // a stage without one

	every := startWriteback(path, time.Millisecond, 0)
	waitFor("flushes with step 0", func() bool { return syncs.Load() >= 3 })
	every.close()
}
