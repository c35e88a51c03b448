package ldap

// The receive low-water mark of the lean paged search. slapd writes a page
// entry by entry, one write each; a reader that keeps up waits for every
// one, and each write then wakes it. On a machine that also runs the
// server, the woken reader preempts slapd on slapd's own core: at
// 1,000,000 entries slapd was preempted 104,000 times during a pull
// (4,700 times while ldapsearch pulled the same entries), streamed an
// entry every 7.6 µs instead of 6, and idled a quarter of the time.
//
// With SO_RCVLOWAT the kernel wakes a waiting reader only once that many
// bytes are queued (a read that finds anything queued still returns it at
// once). The mark must never ask for more than the server will send before
// it waits for the next page's request, or the pull would stall until the
// deadline: it is set from what the page can still hold (the entries the
// page still owes times the smallest entry read so far), and falls to 1
// for the last few entries. A page that ends early (the last one, or a
// server that caps its pages below the requested size, whose next pages
// are then sized from it) is caught by a short deadline: the read takes
// what is queued and the mark is dropped for the rest of the page. A
// server that misses it page after page makes the search give it up, so
// that a miss never costs a wait on every page.

import (
	"errors"
	"os"
	"time"
)

const (
	// markMin is the least mark worth setting: below it, the few reads
	// saved do not pay for the system call.
	markMin = 8 << 10
	// markMax is the most: 64 KB held the reads back longer than slapd
	// took to send them more often (measured: 1,000,000 entries, 5.9 s
	// against 5.5 s), and a larger mark delays the consumer's hand-over.
	markMax = 32 << 10
	// markWait is how long a read waits for the mark before it takes what
	// is queued. slapd on loopback sends markMax in about 0.5 ms.
	markWait = 2 * time.Millisecond
	// markGiveUp is how many pages in a row may miss the mark before the
	// search gives it up: a server that keeps missing it (a slow link)
	// would otherwise cost a wait per page. Not fewer: while a connection
	// is young, slapd on loopback missed 8 to 16 pages in a row (the bytes
	// queued at each miss growing page after page), and 16 gave up on a
	// search that then ran at full speed.
	markGiveUp = 64
)

// lowWater sizes the mark for the reader from what the current page still
// holds for certain, and gives it up for a page, or for the search, after
// misses.
type lowWater struct {
	page   int // entries the page is expected to hold
	seen   int // entries of the current page read so far
	least  int // bytes of the smallest entry message read so far
	missed int // the reader's misses when the page started
	streak int // pages in a row with a miss
	off    bool
}

// entry counts an entry message of n bytes of the current page.
func (w *lowWater) entry(n int) {
	w.seen++
	if w.least == 0 || n < w.least {
		w.least = n
	}
}

// next starts a page, missed being the reader's misses so far. As many
// entries as the last page had are expected: a server that returns fewer
// than were asked for does so on every page.
func (w *lowWater) next(missed int) {
	if w.seen > 0 {
		w.page = w.seen
	}
	w.seen = 0
	if missed > w.missed {
		w.streak++
		w.off = w.off || w.streak >= markGiveUp
	} else {
		w.streak = 0
	}
	w.missed = missed
}

// mark is the mark for the next read; partial is the part of a message
// already read, missed the reader's misses so far. 1 is the kernel's
// default: wake on any byte.
func (w *lowWater) mark(partial, missed int) int {
	if w.off || missed > w.missed || w.least == 0 {
		return 1
	}
	rest := (w.page-w.seen)*w.least - partial
	if rest < markMin {
		return 1
	}
	return min(rest, markMax)
}

// marker is a reader that can hold its reads back until n bytes are
// queued (idleReader on a TCP connection), and counts the reads that
// waited markWait for the mark in vain.
type marker interface {
	setMark(n int)
	missed() int
}

// setMark sets the low-water mark for the next reads; a connection that
// cannot have one (not a socket, not Linux) keeps 1.
func (r *idleReader) setMark(n int) {
	if r.noMark || n == max(r.mark, 1) {
		return
	}
	if r.lowat == nil {
		r.lowat = socketLowat(r.c)
		if r.lowat == nil {
			r.noMark = true
			return
		}
	}
	if err := r.lowat(n); err != nil {
		// Only a broken socket refuses it, and its next read fails too.
		r.noMark, r.mark = true, 0
		return
	}
	r.mark = n
}

func (r *idleReader) missed() int { return r.misses }

// readMarked is Read while a mark is set: a short deadline, and on its
// expiry the mark is dropped and the read made again as any other.
func (r *idleReader) readMarked(p []byte) (int, error) {
	if err := r.c.SetReadDeadline(time.Now().Add(min(markWait, r.timeout))); err != nil {
		return 0, err
	}
	n, err := r.c.Read(p)
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return n, err
	}
	r.misses++
	r.setMark(1)
	return r.readIdle(p)
}
