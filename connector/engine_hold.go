package connector

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// holdFile keeps, on disk, the records a source hands over while the index
// still loads, once the mapper holds maxHeld batches in memory. At a
// million entries the index takes about a second to load, in which the
// directory hands over some 170,000 entries: held in memory they would
// cost about 200 MB, and making the source wait for the index costs that
// second. The file is written and read back once, in order, through the
// page cache; the process's memory does not grow with it.
type holdFile struct {
	f     *os.File
	w     *bufio.Writer
	n     int   // records written
	size  int64 // bytes written
	names []string
	buf   [binary.MaxVarintLen64]byte
}

// maxHoldBytes bounds the hold file: past it, the source waits for the
// index as it did before there was one.
const maxHoldBytes = 1 << 30

func newHoldFile(dir string) (*holdFile, error) {
	f, err := os.CreateTemp(dir, "contactsync-hold-*")
	if err != nil {
		return nil, fmt.Errorf("hold: %w", err)
	}
	// Unlinked at once, as the spool: nothing is left if the process dies.
	_ = os.Remove(f.Name())
	return &holdFile{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (h *holdFile) full() bool { return h.size >= maxHoldBytes }

// add writes rec: key, origin, the names unless they are the previous
// record's (most sources name the same attributes in every record), and
// the values.
func (h *holdFile) add(rec *Record) error {
	h.put(rec.Key)
	h.put(rec.Origin)
	if h.n > 0 && sameNames(h.names, rec.Names) {
		h.putUint(0)
	} else {
		h.putUint(uint64(len(rec.Names)) + 1)
		for _, n := range rec.Names {
			h.put(n)
		}
		h.names = append(h.names[:0], rec.Names...)
	}
	h.putUint(uint64(len(rec.Values)))
	for _, v := range rec.Values {
		h.put(v)
	}
	h.n++
	// bufio.Writer keeps its first error and returns it from every call.
	if _, err := h.w.Write(nil); err != nil {
		return fmt.Errorf("hold: %w", err)
	}
	return nil
}

func (h *holdFile) putUint(v uint64) {
	n := binary.PutUvarint(h.buf[:], v)
	h.w.Write(h.buf[:n])
	h.size += int64(n)
}

func (h *holdFile) put(s string) {
	h.putUint(uint64(len(s)))
	h.w.WriteString(s)
	h.size += int64(len(s))
}

// replay calls fn with every record held, in order, then empties the file.
// rec is reused; its strings are one allocation per record and stay valid.
func (h *holdFile) replay(fn func(rec *Record) error) error {
	if h.n == 0 {
		return nil
	}
	if err := h.w.Flush(); err != nil {
		return fmt.Errorf("hold: %w", err)
	}
	br := bufio.NewReaderSize(io.NewSectionReader(h.f, 0, math.MaxInt64), 256<<10)
	var (
		rec     Record
		names   []string
		scratch []byte
		ends    []int
	)
	readUint := func() (int, error) {
		v, err := binary.ReadUvarint(br)
		if err == nil && v > math.MaxInt32 {
			err = fmt.Errorf("length %d", v)
		}
		return int(v), err
	}
	// read appends the next string's bytes to scratch.
	read := func() error {
		n, err := readUint()
		if err != nil {
			return err
		}
		at := len(scratch)
		scratch = append(scratch, make([]byte, n)...)
		_, err = io.ReadFull(br, scratch[at:])
		ends = append(ends, len(scratch))
		return err
	}
	for i := 0; i < h.n; i++ {
		scratch, ends = scratch[:0], ends[:0]
		if err := read(); err != nil { // key
			return fmt.Errorf("hold: read: %w", err)
		}
		if err := read(); err != nil { // origin
			return fmt.Errorf("hold: read: %w", err)
		}
		nn, err := readUint()
		if err != nil {
			return fmt.Errorf("hold: read: %w", err)
		}
		if nn > 0 {
			names = make([]string, nn-1)
			for j := range names {
				n, err := readUint()
				if err != nil {
					return fmt.Errorf("hold: read: %w", err)
				}
				b := make([]byte, n)
				if _, err := io.ReadFull(br, b); err != nil {
					return fmt.Errorf("hold: read: %w", err)
				}
				names[j] = string(b)
			}
		}
		nv, err := readUint()
		if err != nil {
			return fmt.Errorf("hold: read: %w", err)
		}
		for range nv {
			if err := read(); err != nil {
				return fmt.Errorf("hold: read: %w", err)
			}
		}
		// One string per record, which every field slices, as the
		// sources themselves hand records over.
		all := string(scratch)
		field := func(k int) string {
			lo := 0
			if k > 0 {
				lo = ends[k-1]
			}
			return all[lo:ends[k]]
		}
		rec.Key, rec.Origin, rec.Names = field(0), field(1), names
		rec.Values = rec.Values[:0]
		for k := range nv {
			rec.Values = append(rec.Values, field(2+k))
		}
		if err := fn(&rec); err != nil {
			return err
		}
	}
	return h.reset()
}

func (h *holdFile) reset() error {
	if err := h.f.Truncate(0); err != nil {
		return fmt.Errorf("hold: %w", err)
	}
	if _, err := h.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("hold: %w", err)
	}
	h.w.Reset(h.f)
	h.n, h.size, h.names = 0, 0, h.names[:0]
	return nil
}

func (h *holdFile) close() {
	if h != nil {
		h.f.Close()
	}
}
