package connector

import "sync"

// mapBatchSize is how many records go to the mapping workers at once: large
// enough that a hand-over costs little per record, small enough that the
// copies held in flight stay a few hundred kilobytes.
const mapBatchSize = 256

// mapper maps and hashes records on worker goroutines (phone number
// normalisation dominates a run's CPU), while the runner keeps deciding on
// them one by one in the source's order. Two batches are in flight: the one
// the source fills and the one the workers map.
type mapper struct {
	m     *Mapping
	index *entryIndex // read only while the workers run
	// encode: the run stages its creates, and the workers encode the
	// contacts of fresh keys for it.
	encode    bool
	work      chan mapPart
	workers   int
	cur, prev *mapBatch
	free      []*mapBatch
	// held are full batches the source handed over while the index was
	// still loading: the workers look keys up in it, so they wait.
	held []*mapBatch
	// hold keeps the records handed over after maxHeld batches, until the
	// index is loaded; nil until then.
	hold    *holdFile
	holdDir string
	wg      sync.WaitGroup
}

type mapItem struct {
	rec     Record
	contact Contact
	hash    Hash
	src     Hash     // the record's source hash
	json    []byte   // contact.Marshal(), for a create to stage; nil if not
	en      *indexed // the key's stored entry, nil if none
	skip    bool     // unchanged by its source hash: not mapped
	err     error
}

type mapBatch struct {
	items []mapItem
	n     int
	wg    sync.WaitGroup
}

type mapPart struct {
	b      *mapBatch
	lo, hi int
}

func newMapper(m *Mapping, index *entryIndex, workers int) *mapper {
	p := &mapper{m: m, index: index, work: make(chan mapPart, 2*workers), workers: workers}
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for part := range p.work {
				for i := part.lo; i < part.hi; i++ {
					it := &part.b.items[i]
					mapOne(p.m, p.index, it, &it.contact, p.encode)
				}
				part.b.wg.Done()
			}
		}()
	}
	return p
}

// stop ends the workers once they have mapped what they were given.
func (p *mapper) stop() {
	close(p.work)
	p.wg.Wait()
	p.hold.close()
}

// add copies rec into the filling batch, as the source may reuse its
// buffers once Record returns (values are strings, so they are shared, not
// copied), and reports whether the batch is full.
func (p *mapper) add(rec *Record) bool {
	if p.cur == nil {
		p.cur = p.newBatch()
	}
	p.cur.put(rec)
	return p.cur.n == len(p.cur.items)
}

// newBatch returns an empty batch, reused if one is free.
func (p *mapper) newBatch() *mapBatch {
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		b.n = 0
		return b
	}
	return &mapBatch{items: make([]mapItem, mapBatchSize)}
}

// put copies rec into the batch's next item.
func (b *mapBatch) put(rec *Record) {
	it := &b.items[b.n]
	it.rec.Key, it.rec.Origin = rec.Key, rec.Origin
	it.rec.Names = append(it.rec.Names[:0], rec.Names...)
	it.rec.Values = append(it.rec.Values[:0], rec.Values...)
	b.n++
}

func (p *mapper) submit(b *mapBatch) {
	per := (b.n + p.workers - 1) / p.workers
	for lo := 0; lo < b.n; lo += per {
		b.wg.Add(1)
		p.work <- mapPart{b: b, lo: lo, hi: min(lo+per, b.n)}
	}
}

// maxHeld bounds the batches held while the index loads (16,384 records,
// about 15 MB of LDAP records): past it, the source waits for the index.
const maxHeld = 64

// cycle hands the full batch to the workers, then decides on the batch
// before it. While the index loads, or while it is keyed (engine_keyed.go),
// it holds the batch instead.
func (r *runner) cycle() error {
	p := r.mapper
	b := p.cur
	p.cur = nil
	if r.keyed != nil {
		if len(p.held) < maxHeld {
			p.held = append(p.held, b)
			return nil
		}
		// An incremental pull this large reads every entry after all.
		r.loadAllMeanwhile()
	}
	if r.indexLoaded != nil {
		select {
		case <-r.indexLoaded:
		default:
			if len(p.held) < maxHeld {
				p.held = append(p.held, b)
				return nil
			}
			if held, err := p.holdBatch(b); held || err != nil {
				return err
			}
		}
		if err := r.releaseHeld(); err != nil {
			return err
		}
	}
	return r.cycleBatch(b)
}

// holdBatch writes the records of b into the hold file and frees b. It
// reports false when the file is full: the source then waits for the index.
func (p *mapper) holdBatch(b *mapBatch) (bool, error) {
	if p.hold == nil {
		h, err := newHoldFile(p.holdDir)
		if err != nil {
			return false, err
		}
		p.hold = h
	}
	if p.hold.full() {
		return false, nil
	}
	for i := 0; i < b.n; i++ {
		if err := p.hold.add(&b.items[i].rec); err != nil {
			return false, err
		}
	}
	b.n = 0
	p.free = append(p.free, b)
	return true, nil
}

// releaseHeld waits for the index, then maps and decides on the records
// held meanwhile, in the source's order: the batches in memory, then the
// hold file.
func (r *runner) releaseHeld() error {
	if err := r.awaitIndex(); err != nil {
		return err
	}
	if r.keyed != nil {
		if err := r.lookUpBatches(r.mapper.held...); err != nil {
			return err
		}
	}
	p := r.mapper
	held := p.held
	p.held = nil
	for i, b := range held {
		if err := r.cycleBatch(b); err != nil {
			// The batches not handed over are dropped with the run.
			clear(held[i+1:])
			return err
		}
	}
	if p.hold != nil {
		// Replayed into batches of their own: p.cur, if any, holds
		// records the source handed over after these.
		var b *mapBatch
		err := p.hold.replay(func(rec *Record) error {
			if b == nil {
				b = p.newBatch()
			}
			b.put(rec)
			if b.n < len(b.items) {
				return nil
			}
			full := b
			b = nil
			return r.cycleBatch(full)
		})
		if err == nil && b != nil && b.n > 0 {
			err = r.cycleBatch(b)
		}
		p.hold.close()
		p.hold = nil
		if err != nil {
			return err
		}
	}
	// Keep a few for reuse; the rest were only needed while loading.
	if len(p.free) > 4 {
		clear(p.free[4:])
		p.free = p.free[:4]
	}
	return nil
}

// cycleBatch hands b to the workers, then decides on the batch before it.
func (r *runner) cycleBatch(b *mapBatch) error {
	p := r.mapper
	p.submit(b)
	err := r.drain()
	p.prev = b
	return err
}

// drain waits for the batch in the workers' hands and decides on it.
func (r *runner) drain() error {
	p := r.mapper
	b := p.prev
	if b == nil {
		return nil
	}
	p.prev = nil
	b.wg.Wait()
	defer func() { p.free = append(p.free, b) }()
	for i := 0; i < b.n; i++ {
		it := &b.items[i]
		if err := r.decide(it.rec.Key, it.rec.Origin, &it.contact, it); err != nil {
			return err
		}
	}
	return nil
}

// flushMapped decides on every record handed over so far: before a
// rejection or a deletion, which must come after them, and at the end of
// the pull.
func (r *runner) flushMapped() error {
	p := r.mapper
	if p == nil {
		return r.awaitIndex()
	}
	if err := r.releaseHeld(); err != nil {
		return err
	}
	if err := r.drain(); err != nil {
		return err
	}
	if p.cur != nil && p.cur.n > 0 {
		if r.keyed != nil {
			if err := r.lookUpBatches(p.cur); err != nil {
				return err
			}
		}
		p.prev, p.cur = p.cur, nil
		p.submit(p.prev)
		return r.drain()
	}
	return nil
}
