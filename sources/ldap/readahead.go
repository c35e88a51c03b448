package ldap

// The read-ahead of the lean paged search. Pull's goroutine also runs the
// engine's work on each batch of 256 records (mapping hand-over, decisions,
// spool, staging); when it read the socket itself, the socket was not read
// while the engine worked, and the next page was asked for only once the
// engine reached the page's SearchResultDone: slapd idled for a round trip
// plus the engine's backlog at every page, and used half a core. A reader
// goroutine now reads the socket in large chunks, frames the messages, and
// asks for the next page as soon as it sees the current one's
// SearchResultDone, while Pull's goroutine decodes and emits what it was
// handed.

import (
	"io"
	"sync"
	"sync/atomic"

	goldap "github.com/go-ldap/ldap/v3"
)

// aheadChunk is the size of one read buffer: about 200 entries of 11
// attributes, so that a hand-over costs little per entry. A variable only
// so that tests can cut a real server's answers into small chunks.
var aheadChunk = 64 << 10

const (
	// aheadChunks bounds the buffers in flight (2 MB): past them, the
	// reader stops reading and TCP makes the server wait, so that a slow
	// consumer does not make memory grow. Buffers are many and small
	// rather than few and large because a waiting consumer is handed
	// what was read so far, often a TLS record's worth.
	aheadChunks = 32
	// aheadEager is how many messages a waiting consumer is handed at
	// least (a page's end, an error or a full buffer hand over fewer).
	// Servers write entry by entry, and a reader faster than the server
	// reads one per read: waking the consumer for each would cost a
	// goroutine switch per entry, to gain nothing while the server keeps
	// sending.
	aheadEager = 16
)

// chunk is what the reader hands over: whole messages, in order, parsed
// in place in buf, and the error that ended the stream after them.
type chunk struct {
	buf  []byte
	msgs []message
	err  error
	bad  bool // err is a malformed message, not a failed read or write
}

// readAhead is the reader of one search's connection. Its goroutine alone
// reads the connection and sends the requests for the next pages; the
// consumer receives chunks and releases them once it has decoded them.
type readAhead struct {
	rd      io.Reader // gives each read its idle deadline (idleReader)
	request func(cookie []byte) (int64, error)
	id      int64 // the message ID of the page being read; reader only
	size    int   // bytes per pooled buffer
	out     chan *chunk
	// free holds the chunks not in use; the reader takes the one released
	// last, still in the cache, so that a pull whose consumer keeps up
	// allocates a buffer or two rather than all of them.
	mu    sync.Mutex
	free  []*chunk
	avail chan struct{} // a token per chunk in free
	quit  chan struct{}
	done  chan struct{}
	// waiting is set while the consumer waits for a chunk, so that the
	// reader hands over what it has (aheadEager messages at least) rather
	// than filling its buffer first.
	waiting atomic.Bool
	// mk is rd when it can hold reads back (lowat.go), else nil; lw sizes
	// its mark.
	mk marker
	lw lowWater
}

// newReadAhead prepares the reader of the search whose request has the
// message ID id; request sends the next page's search with cookie and
// returns its message ID. run starts it.
func newReadAhead(rd io.Reader, id int64, size, chunks int, request func(cookie []byte) (int64, error)) *readAhead {
	r := &readAhead{rd: rd, request: request, id: id, size: size,
		out: make(chan *chunk, chunks), avail: make(chan struct{}, chunks),
		quit: make(chan struct{}), done: make(chan struct{})}
	r.mk, _ = rd.(marker)
	for range chunks {
		r.free = append(r.free, &chunk{})
		r.avail <- struct{}{}
	}
	return r
}

// startReadAhead hands the connection to a reader goroutine once the
// search with message ID id, for pages of page entries, was sent: from now
// on only the reader reads, and only it asks for the next pages, through
// request.
func (c *wireConn) startReadAhead(id int64, page int, request func(cookie []byte) (int64, error)) *readAhead {
	c.f.release()
	// The server says nothing between the bind and the first results, but
	// whatever the framer read past the bind belongs to the search.
	carry, _ := c.f.r.Peek(c.f.r.Buffered())
	c.ra = newReadAhead(&idleReader{c: c.nc, timeout: c.timeout}, id, aheadChunk, aheadChunks, request)
	c.ra.lw.page = page
	go c.ra.run(carry)
	return c.ra
}

// run reads until the search's last SearchResultDone, an error, or halt.
func (r *readAhead) run(carry []byte) {
	defer close(r.done)
	defer close(r.out)
	ch := r.take(len(carry))
	if ch == nil {
		return
	}
	ch.buf = append(ch.buf, carry...)
	pos := 0 // where the first message not yet framed starts
	var rerr error
	for {
		urgent := false // a page's end or a message out of place: hand over now
		need := 0       // the size of the message cut at the end, once known
		for {
			n, err := messageSize(ch.buf[pos:])
			if err != nil {
				r.fail(ch, err, true)
				return
			}
			if n == 0 || n > len(ch.buf)-pos {
				need = n
				break
			}
			m, err := parseMessage(ch.buf[pos : pos+n])
			if err != nil {
				r.fail(ch, err, true)
				return
			}
			ch.msgs = append(ch.msgs, m)
			pos += n
			if m.id == r.id && m.op == tagSearchEntry {
				r.lw.entry(n)
			}
			if m.op != tagSearchDone || m.id != r.id {
				// The consumer judges a message out of place, at once: the
				// server may say nothing more.
				urgent = urgent || m.id != r.id || m.op != tagSearchEntry && m.op != tagSearchReference
				continue
			}
			cookie := pageCookie(m)
			if len(cookie) == 0 {
				r.out <- ch // the last page, or an error the consumer reports
				return
			}
			id, err := r.request(cookie)
			if err != nil {
				r.fail(ch, err, false)
				return
			}
			r.id, urgent = id, true
			if r.mk != nil {
				r.lw.next(r.mk.missed())
			}
		}
		if rerr != nil {
			if rerr == io.EOF && pos < len(ch.buf) {
				rerr = io.ErrUnexpectedEOF
			}
			r.fail(ch, rerr, false)
			return
		}
		if len(ch.msgs) > 0 && (urgent || len(ch.msgs) >= aheadEager && r.waiting.Load() || cap(ch.buf)-len(ch.buf) < r.size/16 || need > cap(ch.buf)-pos) {
			next := r.take(max(need, len(ch.buf)-pos))
			if next == nil {
				return
			}
			next.buf = append(next.buf, ch.buf[pos:]...)
			r.out <- ch // never blocks: out holds every chunk there is
			ch, pos = next, 0
		} else if need > cap(ch.buf) {
			// A message larger than a buffer gets one of its own (pos is 0:
			// it is the chunk's first), bounded by maxMessage.
			ch.buf = append(make([]byte, 0, need), ch.buf...)
		}
		if r.mk != nil {
			r.mk.setMark(r.lw.mark(len(ch.buf)-pos, r.mk.missed()))
		}
		n, err := r.rd.Read(ch.buf[len(ch.buf):cap(ch.buf)])
		ch.buf = ch.buf[:len(ch.buf)+n]
		rerr = err
	}
}

// take waits for a free chunk whose buffer holds at least n bytes; nil
// after halt. No read is in progress meanwhile, so a slow consumer never
// runs into the idle timeout.
func (r *readAhead) take(n int) *chunk {
	select {
	case <-r.avail:
	case <-r.quit:
		return nil
	}
	r.mu.Lock()
	ch := r.free[len(r.free)-1]
	r.free = r.free[:len(r.free)-1]
	r.mu.Unlock()
	if cap(ch.buf) < n || ch.buf == nil {
		ch.buf = make([]byte, 0, max(n, r.size))
	}
	ch.buf, ch.msgs, ch.err, ch.bad = ch.buf[:0], ch.msgs[:0], nil, false
	return ch
}

// fail hands over the messages read before err, then err.
func (r *readAhead) fail(ch *chunk, err error, bad bool) {
	ch.err, ch.bad = err, bad
	r.out <- ch
}

// receive returns the next chunk. The reader always ends its stream with
// a chunk that holds the last SearchResultDone or an error; a stream that
// ends otherwise must not look complete.
func (r *readAhead) receive() *chunk {
	var ch *chunk
	ok := true
	select {
	case ch, ok = <-r.out:
	default:
		r.waiting.Store(true)
		ch, ok = <-r.out
		r.waiting.Store(false)
	}
	if !ok {
		return &chunk{err: io.ErrUnexpectedEOF}
	}
	return ch
}

// release gives a received chunk back once its messages were decoded
// (records hold copies). A buffer of one large message is not kept.
func (r *readAhead) release(ch *chunk) {
	if cap(ch.buf) > r.size {
		ch.buf, ch.msgs = nil, nil
	}
	r.mu.Lock()
	r.free = append(r.free, ch)
	r.mu.Unlock()
	r.avail <- struct{}{} // never blocks: there are as many tokens as chunks
}

// halt tells the reader to stop at its next wait for a buffer; the
// caller closes the connection to end a read or write in progress.
func (r *readAhead) halt() { close(r.quit) }

// wait returns once the reader has ended.
func (r *readAhead) wait() { <-r.done }

// pageCookie is the paging cookie of a SearchResultDone that asks for
// another page: nil for an error result or the last page. The consumer
// decodes the same message with the same rules (leanMessage), so both agree
// on whether a next page was asked for.
func pageCookie(m message) []byte {
	if resultError(m.body) != nil {
		return nil
	}
	controls, err := decodeControls(m.controls)
	if err != nil {
		return nil
	}
	if pc, ok := goldap.FindControl(controls, goldap.ControlTypePaging).(*goldap.ControlPaging); ok {
		return pc.Cookie
	}
	return nil
}
