package connector

import "encoding/binary"

// packContact encodes c into one string: each field's length as a uvarint,
// then its bytes. Holding many contacts (a Control Hub export during
// reconcile, an organization's contacts during adoption) costs one
// allocation and their bytes each, not a 432-byte array of string headers
// pointing at 27 allocations.
func packContact(c *Contact) string {
	n := 0
	for _, v := range c {
		n += len(v) + 1
		if len(v) >= 0x80 {
			n += binary.MaxVarintLen64
		}
	}
	b := make([]byte, 0, n)
	for _, v := range c {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return string(b)
}

// unpackContact decodes what packContact encoded. The fields are slices
// of s: nothing is copied.
func unpackContact(s string) Contact {
	var c Contact
	for i := range c {
		var l uint64
		var shift uint
		for {
			b := s[0]
			s = s[1:]
			l |= uint64(b&0x7f) << shift
			if b < 0x80 {
				break
			}
			shift += 7
		}
		c[i], s = s[:l], s[l:]
	}
	return c
}
