package state

import (
	"os"
	"sync"
	"time"
)

// writeback flushes a file that SQLite is writing to disk while it grows,
// from a goroutine of its own, so that the fsync SQLite makes when it
// commits (or ends a checkpoint) finds little left to write. A run of a
// million creates writes 450 MB into the WAL and as much into the database
// file at the checkpoint: flushed only at the end, each fsync took 0.25 s.
// It changes nothing about durability: SQLite still syncs what it must.
type writeback struct {
	stop chan struct{}
	done sync.WaitGroup
}

// syncFile flushes a file; tests count the calls.
var syncFile = (*os.File).Sync

// writebackStep is how much the WAL must have grown before it is flushed
// again: small runs never pay for a flush.
const writebackStep = 32 << 20

// startWriteback flushes path every interval once it has grown by step
// bytes since the last flush (step 0: every interval), until close.
func startWriteback(path string, every time.Duration, step int64) *writeback {
	w := &writeback{stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		var f *os.File
		defer func() {
			if f != nil {
				f.Close()
			}
		}()
		t := time.NewTicker(every)
		defer t.Stop()
		var synced int64
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			if f == nil {
				var err error
				if f, err = os.Open(path); err != nil {
					continue // not there yet
				}
			}
			fi, err := f.Stat()
			if err != nil {
				return
			}
			if size := fi.Size(); size-synced >= step {
				// Any descriptor of the file flushes its dirty pages;
				// an error here is SQLite's to see at its own fsync.
				_ = syncFile(f)
				synced = size
			} else if size < synced {
				synced = size // truncated by a checkpoint
			}
		}
	}()
	return w
}

func (w *writeback) close() {
	if w == nil {
		return
	}
	close(w.stop)
	w.done.Wait()
}
