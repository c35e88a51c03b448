package csvdrop

import (
	"bytes"
	"hash/maphash"
)

// keySet holds the first line of every key of a file, to find duplicates
// in one pass. A map[string] of copied keys costs a map slot of a string
// header plus one allocation per key; this one maps a 64-bit hash to the
// line and to the key's bytes in arena chunks, 16 bytes of map per key and
// a few objects for the collector whatever the file's size. Two keys of the
// same hash are compared byte for byte: a key whose hash is taken by
// another goes to a plain map, so duplicates are found exactly.
type keySet struct {
	seed   maphash.Seed
	hash   func(seed maphash.Seed, b []byte) uint64 // maphash.Bytes; tests force collisions
	first  map[uint64]uint64                        // hash -> line<<32 | arena reference
	chunks [][]byte
	spill  map[string]int32 // keys whose hash another key has
}

const (
	keyChunkBits = 20 // 1 MB chunks
	keyChunkSize = 1 << keyChunkBits
	maxKeyChunks = 1 << (32 - keyChunkBits)
)

// add records key's first line, or reports the first line of a key
// already added. The key's bytes are copied.
func (s *keySet) add(key []byte, line int) (first int, dup bool) {
	if s.first == nil {
		s.seed = maphash.MakeSeed()
		if s.hash == nil {
			s.hash = maphash.Bytes
		}
		s.first = make(map[uint64]uint64)
	}
	h := s.hash(s.seed, key)
	v, ok := s.first[h]
	if !ok {
		if ref, stored := s.store(key); stored {
			s.first[h] = uint64(uint32(line))<<32 | uint64(ref)
			return 0, false
		}
	} else if bytes.Equal(s.load(uint32(v)), key) {
		return int(int32(v >> 32)), true
	}
	if l, ok := s.spill[string(key)]; ok {
		return int(l), true
	}
	if s.spill == nil {
		s.spill = make(map[string]int32)
	}
	s.spill[string(key)] = int32(line)
	return 0, false
}

// store copies key, prefixed by its length, into the arena and returns
// where; false when it does not fit a chunk, or the references are spent.
func (s *keySet) store(key []byte) (uint32, bool) {
	need := len(key) + 2
	if len(key) > 0xffff {
		return 0, false
	}
	n := len(s.chunks)
	if n == 0 || len(s.chunks[n-1])+need > keyChunkSize {
		if n == maxKeyChunks {
			return 0, false
		}
		s.chunks = append(s.chunks, make([]byte, 0, keyChunkSize))
		n++
	}
	c := s.chunks[n-1]
	ref := uint32(n-1)<<keyChunkBits | uint32(len(c))
	c = append(c, byte(len(key)>>8), byte(len(key)))
	s.chunks[n-1] = append(c, key...)
	return ref, true
}

func (s *keySet) load(ref uint32) []byte {
	c := s.chunks[ref>>keyChunkBits]
	off := int(ref & (keyChunkSize - 1))
	n := int(c[off])<<8 | int(c[off+1])
	return c[off+2 : off+2+n]
}
