package connector

import (
	"context"
	"time"
)

// keyedIndex is the index of an incremental run while it holds only some
// of the job's entries: those of the keys the source handed over, looked up
// as the records come, and those whose content waits to be emitted. A run
// of 100 changes among 1,000,000 entries read all of them first (3 s of its
// 3.3 s on a 2-core machine); it now reads about a hundred.
//
// Records are held, as while a whole index loads, until the run needs to
// decide on them (a deletion or a rejection from the source, a full hold,
// the end of the pull); their keys are then looked up together, before the
// mapping workers see them. The run reads every entry after all, keeping
// what it looked up and decided, when the pull turns out complete (the
// server refused the cursor: keys not seen are deletes), when it has
// looked up more than keyedLimit keys (a scan is then cheaper), or when
// the hold is full.
type keyedIndex struct {
	ctx    context.Context // the run's: the emitter's methods have none
	lk     EntryLookup
	looked int // keys looked up so far
	took   time.Duration
}

// keyedLimit is how many keys a run looks up before it reads every entry
// instead (a variable for the tests), the most records the engine holds in
// memory. A key looked up costs what reading three or four entries does
// (BenchmarkEntriesByKey: 5.2 µs a key, 500 a query; BenchmarkEntries:
// 1.4-1.6 µs an entry on the 2-core AMD machine): 16,384 keys take about
// 85 ms, the whole of a 1,000,000-entry job 1.5-3 s.
var keyedLimit = maxHeld * mapBatchSize

// startKeyed makes the run's index a keyed one when the store can look
// entries up and the source says the pull will hand over changes only.
func (r *runner) startKeyed(ctx context.Context, req PullRequest) bool {
	lk, ok := r.e.Store.(EntryLookup)
	if !ok {
		return false
	}
	src, ok := r.job.Source.(IncrementalSource)
	if !ok || !src.Incremental(req) {
		return false
	}
	r.keyed = &keyedIndex{ctx: ctx, lk: lk}
	return true
}

// lookUp adds the stored entries of keys to the index, unless it holds
// them, or the run already knows the state has none. No mapping worker may
// be running.
func (r *runner) lookUp(keys []string) error {
	k := r.keyed
	missing := keys[:0:0]
	for _, key := range keys {
		if r.index.lookup(key) == nil && r.fresh.lookup(key) == nil {
			missing = append(missing, key)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	k.looked += len(missing)
	if k.looked > keyedLimit {
		return r.loadAll()
	}
	start := time.Now()
	defer func() { k.took += time.Since(start) }()
	return k.lk.EntriesByKey(k.ctx, r.job.Name, missing, func(en Entry) error {
		return r.index.put(en.Key, indexedOf(en))
	})
}

// lookUpBatches looks up the keys of the records of batches, before the
// mapping workers see them.
func (r *runner) lookUpBatches(batches ...*mapBatch) error {
	var keys []string
	for _, b := range batches {
		for i := 0; i < b.n; i++ {
			keys = append(keys, b.items[i].rec.Key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	r.waitWorkers()
	return r.lookUp(keys)
}

// waitWorkers waits for the batch the mapping workers may still map: they
// read the index, which a look-up or a load is about to write.
func (r *runner) waitWorkers() {
	if p := r.mapper; p != nil && p.prev != nil {
		p.prev.wg.Wait()
	}
}

// leaveKeyed ends the keyed mode before every entry is read into the
// index, and returns what it was.
func (r *runner) leaveKeyed() *keyedIndex {
	k := r.keyed
	r.keyed = nil
	r.waitWorkers()
	r.log.Debug("index: reading every entry", "looked_up", k.looked)
	return k
}

// loadAll reads every entry of the job into the index, keeping those it
// holds with what the run decided for them, and leaves the keyed mode.
func (r *runner) loadAll() error {
	return r.loadIndex(r.leaveKeyed().ctx)
}

// loadAllMeanwhile starts reading every entry on a goroutine of its own
// and leaves the keyed mode: the records that follow are held until it is
// done, as at the start of a complete pull.
func (r *runner) loadAllMeanwhile() {
	k := r.leaveKeyed()
	r.indexLoaded = make(chan struct{})
	go func() {
		defer close(r.indexLoaded)
		r.indexErr = r.loadIndex(k.ctx)
	}()
}

// finishKeyed completes a keyed index once the pull is over: with every
// entry when the pull was complete, else with the entries whose content
// waits (planRest retries them).
func (r *runner) finishKeyed(ctx context.Context) error {
	k := r.keyed
	if k == nil {
		return nil
	}
	if r.complete {
		return r.loadAll()
	}
	start := time.Now()
	found, waiting := r.index.len(), 0
	err := k.lk.EntriesWaiting(ctx, r.job.Name, func(en Entry) error {
		waiting++
		return r.index.putNew(en.Key, indexedOf(en))
	})
	r.log.Debug("index: entries looked up", "keys", k.looked, "found", found, "waiting", waiting,
		"duration", k.took+time.Since(start))
	return err
}

// managedCount is the job's number of managed contacts, for the deletion
// guard: counted while the index loaded, or by the store.
func (r *runner) managedCount(ctx context.Context) (int, error) {
	if r.keyed == nil {
		return r.managed, nil
	}
	_, managed, err := r.keyed.lk.EntryCounts(ctx, r.job.Name)
	return managed, err
}

// stateEmpty reports whether the state holds no entry of the job.
func (r *runner) stateEmpty(ctx context.Context) (bool, error) {
	if r.keyed == nil {
		return r.index.len() == 0, nil
	}
	n, _, err := r.keyed.lk.EntryCounts(ctx, r.job.Name)
	return n == 0, err
}
