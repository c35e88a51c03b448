package connector

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"time"
	"unsafe"
)

// keyTable gives the keys of a run dense ids (0, 1, 2... in insertion
// order), for a million keys at a time. A map[string]*T costs a string and
// a pointer per key that the garbage collector scans on every cycle; here
// the keys are copied into byte chunks and the table is two arrays of
// integers, none of which holds a pointer per key.
//
// Open addressing with linear probing: a slot holds a byte of the key's
// hash (0: empty) and the key's id, so a probe compares the key itself
// only when that byte matches. Keys are never removed: a run only marks
// them.
//
// Lookups may run concurrently with each other, never with an insert.
type keyTable struct {
	seed maphash.Seed
	tags []uint8  // per slot: 0 empty, else tagOf(hash)
	ids  []uint32 // per slot: the key's id
	refs slabs[uint32]
	// The keys, each a uvarint head and its bytes: head len<<1 for a key
	// as is, 1 for a key in the canonical form of a UUID (an LDAP
	// entryUUID or objectGUID, the usual key), stored as its 16 bytes.
	chunks [][]byte
	n      int
}

// packedUUID is the head of a key stored as the 16 bytes of a UUID.
const packedUUID = 1

// packUUID returns the bytes of key if key is a UUID in canonical form
// (lowercase, 8-4-4-4-12), the only form that unpacks to the same string.
func packUUID(key string) (b [16]byte, ok bool) {
	if len(key) != 36 {
		return b, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		switch i {
		case 8, 13, 18, 23:
			if key[i] != '-' {
				return b, false
			}
			i++
		}
		hi, ok1 := unhex(key[i])
		lo, ok2 := unhex(key[i+1])
		if !ok1 || !ok2 {
			return b, false
		}
		b[j] = hi<<4 | lo
		j++
	}
	return b, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// unpackUUID writes the canonical form of b into dst.
func unpackUUID(dst *[36]byte, b []byte) {
	const digits = "0123456789abcdef"
	j := 0
	for i := 0; i < 16; i++ {
		switch i {
		case 4, 6, 8, 10:
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = digits[b[i]>>4], digits[b[i]&15]
		j += 2
	}
}

// probe is a key being looked up, with its packed form if it has one.
type probe struct {
	key    string
	packed [16]byte
	isUUID bool
}

func newProbe(key string) probe {
	p := probe{key: key}
	p.packed, p.isUUID = packUUID(key)
	return p
}

const (
	// A key's place in the chunks is one uint32: the chunk in the high
	// bits, the offset in the low ones (a key longer than a chunk gets a
	// chunk of its own, which only its start needs to be addressed in).
	chunkBits    = 20
	maxChunkSize = 1 << chunkBits
	maxChunks    = 1 << (32 - chunkBits)
	minChunkSize = 4 << 10
	minSlots     = 64
)

// errIndexFull is returned past 4 GiB of keys.
var errIndexFull = errors.New("index: more than 4 GiB of keys")

func tagOf(h uint64) uint8 {
	if t := uint8(h >> 56); t != 0 {
		return t
	}
	return 1
}

func (t *keyTable) hash(key string) uint64 {
	if t.tags == nil {
		t.seed = maphash.MakeSeed()
	}
	return maphash.String(t.seed, key)
}

func (t *keyTable) len() int { return t.n }

// stored returns the stored bytes of id's key, and whether they are a
// packed UUID.
func (t *keyTable) stored(id int) ([]byte, bool) {
	ref := *t.refs.at(id)
	c := t.chunks[ref>>chunkBits][ref&(maxChunkSize-1):]
	head, w := binary.Uvarint(c)
	if head == packedUUID {
		return c[w : w+16], true
	}
	return c[w : w+int(head>>1)], false
}

// key returns the key of id. A key stored as is shares the table's
// memory, which is never written again once a key is in it; a UUID is
// rebuilt (an allocation: only deletes of a complete pull need it).
func (t *keyTable) key(id int) string {
	b, isUUID := t.stored(id)
	if isUUID {
		var s [36]byte
		unpackUUID(&s, b)
		return string(s[:])
	}
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// hashOf is the hash of id's key, without building a string.
func (t *keyTable) hashOf(id int) uint64 {
	b, isUUID := t.stored(id)
	if isUUID {
		var s [36]byte
		unpackUUID(&s, b)
		return maphash.Bytes(t.seed, s[:])
	}
	return maphash.Bytes(t.seed, b)
}

// is reports whether id's key is p's.
func (t *keyTable) is(id int, p *probe) bool {
	b, isUUID := t.stored(id)
	if isUUID {
		return p.isUUID && [16]byte(b) == p.packed
	}
	return !p.isUUID && string(b) == p.key
}

// find returns the id of p's key, or -1 and the slot where it would go.
func (t *keyTable) find(p *probe, h uint64) (id int, slot int) {
	if len(t.tags) == 0 {
		return -1, 0
	}
	tag, mask := tagOf(h), len(t.tags)-1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch t.tags[i] {
		case 0:
			return -1, i
		case tag:
			if id := int(t.ids[i]); t.is(id, p) {
				return id, i
			}
		}
	}
}

// lookup returns the id of key, or -1.
func (t *keyTable) lookup(key string) int {
	if t.n == 0 {
		return -1
	}
	p := newProbe(key)
	id, _ := t.find(&p, maphash.String(t.seed, key))
	return id
}

// insert returns the id of key, adding the key if it is new.
func (t *keyTable) insert(key string) (id int, added bool, err error) {
	h := t.hash(key)
	p := newProbe(key)
	id, slot := t.find(&p, h)
	if id >= 0 {
		return id, false, nil
	}
	if (t.n+1)*4 > len(t.tags)*3 {
		t.grow()
		_, slot = t.find(&p, h)
	}
	ref, err := t.store(&p)
	if err != nil {
		return -1, false, err
	}
	id = t.n
	t.refs.add(ref)
	t.tags[slot], t.ids[slot] = tagOf(h), uint32(id)
	t.n++
	return id, true, nil
}

// store copies p's key into the chunks.
func (t *keyTable) store(p *probe) (uint32, error) {
	var lb [binary.MaxVarintLen64]byte
	var ln, size int
	if p.isUUID {
		ln, size = binary.PutUvarint(lb[:], packedUUID), len(p.packed)
	} else {
		ln, size = binary.PutUvarint(lb[:], uint64(len(p.key))<<1), len(p.key)
	}
	need := ln + size
	last := len(t.chunks) - 1
	if last < 0 || len(t.chunks[last])+need > cap(t.chunks[last]) {
		if len(t.chunks) == maxChunks {
			return 0, errIndexFull
		}
		// Chunks double up to maxChunkSize, so that a small job does not
		// pay for a large one.
		size := minChunkSize
		if last >= 0 {
			size = min(2*cap(t.chunks[last]), maxChunkSize)
		}
		t.chunks = append(t.chunks, make([]byte, 0, max(size, need)))
		last++
	}
	c := t.chunks[last]
	ref := uint32(last)<<chunkBits | uint32(len(c))
	c = append(c, lb[:ln]...)
	if p.isUUID {
		c = append(c, p.packed[:]...)
	} else {
		c = append(c, p.key...)
	}
	t.chunks[last] = c
	return ref, nil
}

// grow doubles the slots and places every key again.
func (t *keyTable) grow() {
	size := max(2*len(t.tags), minSlots)
	t.tags, t.ids = make([]uint8, size), make([]uint32, size)
	mask := size - 1
	for id := 0; id < t.n; id++ {
		h := t.hashOf(id)
		i := int(h) & mask
		for t.tags[i] != 0 {
			i = (i + 1) & mask
		}
		t.tags[i], t.ids[i] = tagOf(h), uint32(id)
	}
}

// slabs is a growing array in fixed slabs: no copy of everything when it
// grows, and for a type without pointers, nothing for the collector to scan.
type slabs[T any] struct{ s [][]T }

const slabBits = 12

func (s *slabs[T]) at(i int) *T { return &s.s[i>>slabBits][i&(1<<slabBits-1)] }

func (s *slabs[T]) add(v T) {
	if n := len(s.s); n == 0 || len(s.s[n-1]) == cap(s.s[n-1]) {
		s.s = append(s.s, make([]T, 0, 1<<slabBits))
	}
	last := &s.s[len(s.s)-1]
	*last = append(*last, v)
}

// indexed is a stored entry and what this run decided for its key, in one
// place: one lookup per record.
//
// It holds only what the run needs of an Entry, in 40 bytes and no
// pointer: a million entries are a good part of a big job's memory, and
// slabs without pointers are nothing for the collector to scan. The key is
// in the index's key table; the UUID is not kept: the changes that need it
// (updates, deletes) get it with their stored content (enrich).
//
// During the pull the index and the fields Hash, src, status and desired
// are only read, so the mapping workers read them too (to skip the mapping
// of unchanged records); the decider writes only the mark's fields (each
// its own byte or word, so that the two never write or read the same
// memory).
type indexed struct {
	Hash    Hash
	src     Hash  // Entry.SourceHash
	seq     int32 // the mark's
	cat     uint8 // the mark's; catUnseen until the run decides on the key
	seg     int8  // the mark's
	status  uint8 // stBound, stPending, stFailed; 0 for anything else
	desired bool  // content waits to be emitted (Entry.Desired is set)
}

func (en *indexed) seen() bool { return en.cat != catUnseen }

func (en *indexed) mark() mark { return mark{cat: en.cat, seg: en.seg, seq: en.seq} }

func (en *indexed) setMark(m mark) { en.cat, en.seg, en.seq = m.cat, m.seg, m.seq }

const (
	stBound uint8 = 1 + iota
	stPending
	stFailed
)

// keyed holds a value per key: the keys in a keyTable, the values in
// slabs at the keys' ids.
type keyed[T any] struct {
	keys keyTable
	vals slabs[T]
}

func (x *keyed[T]) len() int { return x.keys.len() }

// lookup returns the value of key, or nil.
func (x *keyed[T]) lookup(key string) *T {
	if id := x.keys.lookup(key); id >= 0 {
		return x.vals.at(id)
	}
	return nil
}

// putNew adds the value of key, unless key has one.
func (x *keyed[T]) putNew(key string, v T) error {
	_, added, err := x.keys.insert(key)
	if err == nil && added {
		x.vals.add(v)
	}
	return err
}

// put adds or replaces the value of key.
func (x *keyed[T]) put(key string, v T) error {
	id, added, err := x.keys.insert(key)
	if err != nil {
		return err
	}
	if added {
		x.vals.add(v)
	} else {
		*x.vals.at(id) = v
	}
	return nil
}

// entryIndex is the state's entries of the job, by key.
type entryIndex = keyed[indexed]

// freshKeys are the keys the run decided on that the state does not hold,
// with what it decided.
type freshKeys = keyed[mark]

// awaitIndex waits until the index is loaded and returns the load's error.
// Everything that reads the index, the marks or managed during a run comes
// after it.
func (r *runner) awaitIndex() error {
	if r.indexLoaded != nil {
		<-r.indexLoaded
		r.indexLoaded = nil
	}
	return r.indexErr
}

// loadIndex reads every entry of the job into the index. Entries it holds
// already (looked up by a keyed index) keep what the run decided for them.
func (r *runner) loadIndex(ctx context.Context) error {
	start := time.Now()
	defer func() {
		// At a million entries the load takes about a second, and the
		// source may wait for it: the timing says how much.
		r.log.Debug("index loaded", "entries", r.index.len(), "duration", time.Since(start))
	}()
	r.managed = 0
	return r.e.Store.Entries(ctx, r.job.Name, func(en Entry) error {
		if err := r.index.putNew(en.Key, indexedOf(en)); err != nil {
			return err
		}
		if en.Status != EntryFailed {
			r.managed++
		}
		return nil
	})
}

// indexedOf is what the index keeps of en.
func indexedOf(en Entry) indexed {
	ix := indexed{Hash: en.Hash, src: en.SourceHash, desired: !en.Desired.IsZero()}
	switch en.Status {
	case EntryBound:
		ix.status = stBound
	case EntryPending:
		ix.status = stPending
	case EntryFailed:
		ix.status = stFailed
	}
	return ix
}
