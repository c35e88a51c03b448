package csvdrop

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
)

// keySet holds the first line of every key of a file, to find duplicates
// in one pass. A map[string] of copied keys costs a map slot of a string
// header plus one allocation per key; this one is an open-addressing table
// of 8-byte slots (32 bits of the key's hash, 32 bits locating the key and
// its line in arena chunks): two objects for the collector per few million
// keys, about 30 bytes per key in all, and one probe for both the look-up
// and the insert. Keys of equal hash bits are compared byte for byte, so
// duplicates are found exactly.
type keySet struct {
	seed   maphash.Seed
	hash   func(seed maphash.Seed, b []byte) uint64 // maphash.Bytes; tests force collisions
	slots  []uint64                                 // hash<<32 | ref; 0 is empty
	n      int                                      // keys in slots
	chunks [][]byte
	spill  map[string]int32 // keys too long for a chunk
}

const (
	keySetMinSlots = 1 << 10
	// A ref is a chunk number and an offset in it.
	keyOffsetBits = 22
	keyChunkMax   = 1 << keyOffsetBits // 4 MB
	keyChunkFirst = 64 << 10
	maxKeyChunks  = 1 << (32 - keyOffsetBits)
	// maxArenaKey leaves room for the length and the line.
	maxArenaKey = keyChunkMax - binary.MaxVarintLen64 - 4
)

// add records key's first line, or reports the first line of a key
// already added. The key's bytes are copied.
func (s *keySet) add(key []byte, line int) (first int, dup bool) {
	if s.slots == nil {
		s.seed = maphash.MakeSeed()
		if s.hash == nil {
			s.hash = maphash.Bytes
		}
		s.slots = make([]uint64, keySetMinSlots)
	}
	if len(key) > maxArenaKey {
		return s.addSpill(key, line)
	}
	h64 := s.hash(s.seed, key)
	h := uint32(h64 ^ h64>>32)
	mask := len(s.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			ref, ok := s.store(key, line)
			if !ok {
				return s.addSpill(key, line)
			}
			s.slots[i] = uint64(h)<<32 | uint64(ref)
			if s.n++; s.n*4 > len(s.slots)*3 {
				s.grow()
			}
			return 0, false
		}
		if uint32(v>>32) == h {
			if k, l := s.load(uint32(v)); bytes.Equal(k, key) {
				return l, true
			}
		}
	}
}

func (s *keySet) addSpill(key []byte, line int) (int, bool) {
	if l, ok := s.spill[string(key)]; ok {
		return int(l), true
	}
	if s.spill == nil {
		s.spill = make(map[string]int32)
	}
	s.spill[string(key)] = int32(line)
	return 0, false
}

// grow doubles the table; the slots keep the hash bits that place them.
func (s *keySet) grow() {
	slots := make([]uint64, 2*len(s.slots))
	mask := len(slots) - 1
	for _, v := range s.slots {
		if v == 0 {
			continue
		}
		i := int(v>>32) & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = v
	}
	s.slots = slots
}

// store appends the key's length, its line and the key to the arena and
// returns where, never 0; false when the chunks are spent.
func (s *keySet) store(key []byte, line int) (uint32, bool) {
	need := binary.MaxVarintLen64 + 4 + len(key)
	n := len(s.chunks)
	if n == 0 || len(s.chunks[n-1])+need > cap(s.chunks[n-1]) {
		if n == maxKeyChunks {
			return 0, false
		}
		size := keyChunkMax
		if n < 6 {
			size = keyChunkFirst << n
		}
		c := make([]byte, 0, max(size, need+1))
		if n == 0 {
			c = append(c, 0) // ref 0 means an empty slot
		}
		s.chunks = append(s.chunks, c)
		n++
	}
	c := s.chunks[n-1]
	ref := uint32(n-1)<<keyOffsetBits | uint32(len(c))
	c = binary.AppendUvarint(c, uint64(len(key)))
	c = binary.LittleEndian.AppendUint32(c, uint32(int32(line)))
	s.chunks[n-1] = append(c, key...)
	return ref, true
}

// load returns the key and line stored at ref.
func (s *keySet) load(ref uint32) ([]byte, int) {
	c := s.chunks[ref>>keyOffsetBits]
	off := int(ref & (keyChunkMax - 1))
	n, w := binary.Uvarint(c[off:])
	off += w
	line := int(int32(binary.LittleEndian.Uint32(c[off:])))
	off += 4
	return c[off : off+int(n)], line
}
