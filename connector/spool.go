package connector

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"unsafe"
)

// spool keeps a run's changes on disk between the pull and the commit, so
// that a run of a million creates holds one change in memory at a time.
// Each segment (creates, updates, deletes) is its own file, so the plan can
// be read back in that order without sorting.
type spool struct {
	dir  string
	segs [numSegs]*segment
	buf  [binary.MaxVarintLen64]byte // a length being written
	// fill writes the records skipped at the start of a segment (see
	// skip) through refill; write calls it before it appends a record
	// to such a segment.
	fill func(seg int) error
}

type segment struct {
	f          *os.File
	w          *bufio.Writer
	n          int32              // records written
	staged     int32              // of which staged during the pull (flagStaged)
	superseded map[int32]struct{} // records replaced by a later one of the same key
	// skipped: the first records of the segment were counted, not written
	// (see skip). Reading the segment waits for refill.
	skipped int32
}

const (
	segCreate = iota
	segUpdate
	segDelete
	// segRaw holds updates and deletes before their stored content is
	// loaded: loading it in chunks after the pull is far cheaper than one
	// lookup per record during it.
	segRaw
	segReject // rejections: key, origin (in uuid) and reason
	segTouch  // source hashes to refresh: key and src
	numSegs
)

func newSpool(dir string) (*spool, error) {
	s := &spool{dir: dir}
	for i := range s.segs {
		f, err := os.CreateTemp(dir, "contactsync-spool-*")
		if err != nil {
			s.close()
			return nil, fmt.Errorf("spool: %w", err)
		}
		// Unlinked at once: nothing is left behind if the process dies.
		_ = os.Remove(f.Name())
		s.segs[i] = &segment{f: f, w: bufio.NewWriterSize(f, 256<<10)}
	}
	return s, nil
}

func (s *spool) close() {
	for _, g := range s.segs {
		if g != nil {
			g.f.Close()
		}
	}
}

// spoolRec is one change as spooled.
type spoolRec struct {
	action Action
	flags  byte
	key    string
	uuid   string
	reason string
	new    Contact
	old    Contact
	hasOld bool
	src    Hash // the record's source hash; zero when unknown
}

const (
	flagHeld        byte = 1 << iota // held back by safety.allow: recorded, not emitted
	flagSilent                       // committed but never shown to the sink (a failed create gone from the source)
	flagFromDesired                  // the new content is the entry's stored desired content
	flagHasOld
	flagHasSrc
	flagStaged // a create staged during the pull: emitted, not committed again
)

// actionCode is a switch rather than a map: it runs for every record
// spooled.
func actionCode(a Action) byte {
	switch a {
	case ActionCreate:
		return 'c'
	case ActionUpdate:
		return 'u'
	case ActionDelete:
		return 'd'
	case ActionBind:
		return 'b'
	case ActionTouch:
		return 't'
	}
	return 0
}

func actionOf(b byte) Action {
	switch b {
	case 'c':
		return ActionCreate
	case 'u':
		return ActionUpdate
	case 'b':
		return ActionBind
	case 't':
		return ActionTouch
	}
	return ActionDelete
}

func (s *spool) write(seg int, r *spoolRec) (int32, error) {
	g := s.segs[seg]
	if g.skipped > 0 {
		// The skipped records come first: a record after them is
		// written after them.
		if s.fill == nil {
			return 0, fmt.Errorf("spool: %d skipped records and no way to write them", g.skipped)
		}
		if err := s.fill(seg); err != nil {
			return 0, err
		}
	}
	flags := r.flags
	if r.hasOld {
		flags |= flagHasOld
	}
	if !r.src.IsZero() {
		flags |= flagHasSrc
	}
	if err := g.w.WriteByte(actionCode(r.action)); err != nil {
		return 0, err
	}
	if err := g.w.WriteByte(flags); err != nil {
		return 0, err
	}
	if flags&flagHasSrc != 0 {
		if _, err := g.w.Write(r.src[:]); err != nil {
			return 0, err
		}
	}
	put := func(v string) error {
		n := binary.PutUvarint(s.buf[:], uint64(len(v)))
		if _, err := g.w.Write(s.buf[:n]); err != nil {
			return err
		}
		_, err := g.w.WriteString(v)
		return err
	}
	for _, v := range [...]string{r.key, r.uuid, r.reason} {
		if err := put(v); err != nil {
			return 0, err
		}
	}
	for _, v := range r.new {
		if err := put(v); err != nil {
			return 0, err
		}
	}
	if r.hasOld {
		for _, v := range r.old {
			if err := put(v); err != nil {
				return 0, err
			}
		}
	}
	g.n++
	if r.flags&flagStaged != 0 {
		g.staged++
	}
	return g.n - 1, nil
}

// skip counts a staged create without writing it, when the run can give
// it back later (refill): a first import's creates are in the stage and in
// the output stream already, and a million of them written here once more
// cost 0.7 s of CPU that the pull shares with the directory. Only the
// first records of a segment are skipped, so that refill can write them
// in order before anything else; skip returns false once one was written.
func (s *spool) skip(seg int) (int32, bool) {
	g := s.segs[seg]
	if g.n != g.skipped {
		return 0, false
	}
	g.n++
	g.staged++
	g.skipped++
	return g.n - 1, true
}

// hasSkipped reports whether seg has records that refill must write.
func (s *spool) hasSkipped(seg int) bool { return s.segs[seg].skipped > 0 }

// refill writes the records that skip counted, in their places: next
// yields the key and contact of each one not superseded since, in order;
// a superseded one (a reverted create) gets a placeholder, which readers
// skip as they skip every superseded record.
func (s *spool) refill(seg int, next func(yield func(key string, c *Contact) error) error) error {
	g := s.segs[seg]
	n, total, staged := g.skipped, g.n, g.staged
	if n == 0 {
		return nil
	}
	if total != n {
		return fmt.Errorf("spool: %d records written after %d skipped ones", total-n, n)
	}
	g.n, g.staged, g.skipped = 0, 0, 0
	var (
		seq int32
		rec spoolRec
	)
	pad := func() error {
		for ; seq < n; seq++ {
			if _, ok := g.superseded[seq]; !ok {
				return nil
			}
			rec = spoolRec{action: ActionCreate, flags: flagStaged}
			if _, err := s.write(seg, &rec); err != nil {
				return err
			}
		}
		return nil
	}
	err := next(func(key string, c *Contact) error {
		if err := pad(); err != nil {
			return err
		}
		if seq == n {
			// A create staged after the skipped ones (the stream given
			// up for it): the spool writes it itself.
			return errRefilled
		}
		rec = spoolRec{action: ActionCreate, flags: flagStaged, key: key, new: *c}
		if _, err := s.write(seg, &rec); err != nil {
			return err
		}
		seq++
		return nil
	})
	if errors.Is(err, errRefilled) {
		err = nil
	}
	if err == nil {
		err = pad()
	}
	if err == nil && (seq != n || g.n != total || g.staged != staged) {
		err = fmt.Errorf("spool: %d of %d skipped records given back", seq, n)
	}
	if err != nil {
		// Nothing reads the segment as if it were whole.
		g.n, g.staged, g.skipped = total, staged, n
		return fmt.Errorf("spool: refill: %w", err)
	}
	return nil
}

// errRefilled ends refill's reading once every skipped record is back.
var errRefilled = errors.New("every skipped record written")

func (s *spool) supersede(seg int, seq int32) {
	g := s.segs[seg]
	if g.superseded == nil {
		g.superseded = make(map[int32]struct{})
	}
	g.superseded[seq] = struct{}{}
}

// each reads a segment back, skipping superseded records. rec is reused.
func (s *spool) each(seg int, fn func(r *spoolRec) error) error {
	return s.read(seg, true, fn)
}

// eachHead reads a segment back like each, without the contacts (new and
// old stay empty) and without allocating: key, uuid and reason share a
// buffer that the next record overwrites, so fn must not keep them.
func (s *spool) eachHead(seg int, fn func(r *spoolRec) error) error {
	return s.read(seg, false, fn)
}

func (s *spool) read(seg int, contacts bool, fn func(r *spoolRec) error) error {
	g := s.segs[seg]
	if g.skipped > 0 {
		return fmt.Errorf("spool: %d records skipped and not written back", g.skipped)
	}
	// Readers read at offsets and never move the file's own, which the
	// writer appends at: the sink and the staging goroutine read the same
	// segments at once, once nothing is buffered (see flush).
	if g.w.Buffered() > 0 {
		if err := g.w.Flush(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	br := bufio.NewReaderSize(io.NewSectionReader(g.f, 0, math.MaxInt64), 256<<10)
	var r spoolRec
	// A record's fields are read into one buffer and become one string,
	// which every field then slices: one allocation per record instead of
	// one per non-empty field (a million creates are read three times).
	const maxFields = 3 + 2*int(NumFields)
	var (
		scratch []byte
		ends    [maxFields]int
	)
	for seq := int32(0); seq < g.n; seq++ {
		a, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("spool: read: %w", err)
		}
		flags, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("spool: read: %w", err)
		}
		r = spoolRec{action: actionOf(a), flags: flags &^ (flagHasOld | flagHasSrc), hasOld: flags&flagHasOld != 0}
		if flags&flagHasSrc != 0 {
			if _, err := io.ReadFull(br, r.src[:]); err != nil {
				return fmt.Errorf("spool: read: %w", err)
			}
		}
		nf := 3 + int(NumFields)
		if r.hasOld {
			nf += int(NumFields)
		}
		scratch = scratch[:0]
		for i := 0; i < nf; i++ {
			n, err := binary.ReadUvarint(br)
			if err != nil {
				return fmt.Errorf("spool: read: %w", err)
			}
			if !contacts && i >= 3 {
				if _, err := br.Discard(int(n)); err != nil {
					return fmt.Errorf("spool: read: %w", err)
				}
				continue
			}
			at := len(scratch)
			scratch = slices.Grow(scratch, int(n))[:at+int(n)]
			if _, err := io.ReadFull(br, scratch[at:]); err != nil {
				return fmt.Errorf("spool: read: %w", err)
			}
			ends[i] = len(scratch)
		}
		if !contacts {
			head := unsafe.String(unsafe.SliceData(scratch), len(scratch))
			r.key, r.uuid, r.reason = head[:ends[0]], head[ends[0]:ends[1]], head[ends[1]:ends[2]]
		} else {
			// The key has its own string: sinks and outcomes keep keys, and
			// must not pin the whole record with them.
			r.key = string(scratch[:ends[0]])
			all := string(scratch[ends[0]:])
			field := func(i int) string {
				return all[ends[i-1]-ends[0] : ends[i]-ends[0]]
			}
			r.uuid, r.reason = field(1), field(2)
			for i := range r.new {
				r.new[i] = field(3 + i)
			}
			if r.hasOld {
				for i := range r.old {
					r.old[i] = field(3 + int(NumFields) + i)
				}
			}
		}
		if _, skip := g.superseded[seq]; skip {
			continue
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}

// any reports whether one of the segments holds a record.
func (s *spool) any(segs ...int) bool {
	for _, seg := range segs {
		if s.segs[seg].n > 0 {
			return true
		}
	}
	return false
}

// anyUnstaged reports whether one of the segments holds a record that was
// not staged during the pull.
func (s *spool) anyUnstaged(segs ...int) bool {
	for _, seg := range segs {
		if g := s.segs[seg]; g.n > g.staged {
			return true
		}
	}
	return false
}

// allStaged returns how many records seg holds when every one of them was
// staged during the pull and none was superseded since.
func (s *spool) allStaged(seg int) (int32, bool) {
	g := s.segs[seg]
	return g.n, g.n == g.staged && len(g.superseded) == 0
}

// flush writes every segment's buffer, so that readers on several
// goroutines may read the spool at once (none of them writes).
func (s *spool) flush() error {
	for _, g := range s.segs {
		if err := g.w.Flush(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	return nil
}

// reset empties a segment (used when a segment is rewritten with more
// detail, such as updates enriched with their old content).
func (s *spool) reset(seg int) error {
	g := s.segs[seg]
	if err := g.f.Truncate(0); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := g.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	g.w.Reset(g.f)
	g.n, g.staged = 0, 0
	g.superseded = nil
	return nil
}
