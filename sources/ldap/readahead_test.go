package ldap

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/contactsync/contactsync/connector"
	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// doneMessage encodes a SearchResultDone with a paging control that
// carries cookie (none when cookie is nil).
func doneMessage(id int64, code int, diag string, cookie []byte) []byte {
	pkt := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	pkt.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationSearchResultDone, nil, "")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, ""))
	pkt.AppendChild(op)
	if cookie != nil {
		paging := goldap.NewControlPaging(2)
		paging.SetCookie(cookie)
		cp := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "")
		cp.AppendChild(paging.Encode())
		pkt.AppendChild(cp)
	}
	return pkt.Bytes()
}

func bindResponse(id int64) []byte {
	pkt := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	pkt.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationBindResponse, nil, "")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	pkt.AppendChild(op)
	return pkt.Bytes()
}

// person is the entry the fake server sends for name on the page with
// message ID id.
func person(id int64, name string) []byte {
	return entryMessage(id, "uid="+name+",dc=x", attr{"entryUUID", []string{"u-" + name}}, attr{"cn", []string{name}})
}

// personEvent is what the recorder writes down for person(_, name).
func personEvent(name string) string {
	return fmt.Sprintf(`record "u-%s" "uid=%s,dc=x" dn="uid=%s,dc=x" entryuuid="u-%s" cn=%q`, name, name, name, name, name)
}

// framed is a message's parts, copied out of the buffer they point into.
type framed struct {
	id       int64
	op       byte
	body     string
	controls string
}

func framedOf(m message) framed {
	return framed{m.id, m.op, string(m.body), string(m.controls)}
}

// drain collects every message the reader hands over, in order, and the
// error that ended its stream.
func drain(r *readAhead) ([]framed, error) {
	var out []framed
	var err error
	for ch := range r.out {
		for _, m := range ch.msgs {
			out = append(out, framedOf(m))
		}
		if ch.err != nil {
			err = ch.err
		}
		r.release(ch)
	}
	return out, err
}

// cutReader returns the stream in reads whose sizes cycle through cuts.
type cutReader struct {
	b    []byte
	cuts []int
	i    int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := len(c.b)
	if len(c.cuts) > 0 {
		n = max(1, c.cuts[c.i%len(c.cuts)])
		c.i++
	}
	n = min(n, len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

func TestReadAheadFraming(t *testing.T) {
	const size = 256 // bytes per chunk: entries are cut across chunks
	big := entryMessage(1, "uid=big,dc=x", attr{"entryUUID", []string{"u-big"}}, attr{"cn", []string{strings.Repeat("b", 3*size)}})
	page1 := [][]byte{person(1, "a"), person(1, "b"), big, person(1, "c"), doneMessage(1, 0, "", []byte("c1"))}
	page2 := [][]byte{big, big, person(2, "d"), doneMessage(2, 0, "", []byte{})}
	after := person(2, "never") // after the last Done: not read
	stream := slices.Concat(slices.Concat(page1...), slices.Concat(page2...), after)
	var want []framed
	for _, msg := range slices.Concat(page1, page2) {
		m, err := parseMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, framedOf(m))
	}
	run := func(t *testing.T, rd io.Reader, carry []byte) ([]framed, error, [][]byte) {
		var cookies [][]byte
		r := newReadAhead(rd, 1, size, 3, func(cookie []byte) (int64, error) {
			cookies = append(cookies, slices.Clone(cookie))
			return int64(len(cookies) + 1), nil
		})
		go r.run(carry)
		got, err := drain(r)
		r.wait()
		return got, err, cookies
	}
	check := func(t *testing.T, got []framed, err error, cookies [][]byte) {
		t.Helper()
		if err != nil {
			t.Fatalf("error %v after %d messages", err, len(got))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%d messages, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
		}
		if len(cookies) != 1 || string(cookies[0]) != "c1" {
			t.Errorf("next pages asked for with cookies %q, want one with c1", cookies)
		}
	}
	readers := []struct {
		name string
		rd   func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(stream) }},
		{"one byte per read", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half per read", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) }},
		{"uneven reads", func() io.Reader { return &cutReader{b: stream, cuts: []int{7, 300, 1, 64, 1000}} }},
	}
	for _, rr := range readers {
		t.Run(rr.name, func(t *testing.T) {
			got, err, cookies := run(t, rr.rd(), nil)
			check(t, got, err, cookies)
		})
	}
	t.Run("every cut of two reads", func(t *testing.T) {
		for n := 1; n < len(stream); n++ {
			got, err, cookies := run(t, &cutReader{b: stream, cuts: []int{n, len(stream)}}, nil)
			check(t, got, err, cookies)
		}
	})
	t.Run("every carry from the framer", func(t *testing.T) {
		for n := 0; n < 600; n += 7 {
			got, err, cookies := run(t, bytes.NewReader(stream[n:]), stream[:n])
			check(t, got, err, cookies)
		}
	})
}

func firstDiff(a, b []framed) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestReadAheadErrors(t *testing.T) {
	a, b := person(1, "a"), person(1, "b")
	okDone := doneMessage(1, 0, "", []byte("c1"))
	sendFailed := errors.New("write: broken pipe")
	tests := []struct {
		name    string
		stream  []byte
		request error
		msgs    int // handed over before the error
		want    error
		bad     bool
	}{
		{"clean end between two messages", slices.Concat(a, b), nil, 2, io.EOF, false},
		{"end inside a message", slices.Concat(a, b[:len(b)-1]), nil, 1, io.ErrUnexpectedEOF, false},
		{"end inside a length", slices.Concat(a, []byte{0x30, 0x82, 0x01}), nil, 1, io.ErrUnexpectedEOF, false},
		{"end after the next page's request", slices.Concat(a, okDone), nil, 2, io.EOF, false},
		{"the next page's request fails", slices.Concat(a, okDone, b), sendFailed, 2, sendFailed, false},
		{"not an LDAP message", slices.Concat(a, []byte{0x04, 0x01, 'x'}), nil, 1, nil, true},
		{"malformed message ID", slices.Concat(a, []byte{0x30, 0x03, 0x04, 0x01, 0x01}), nil, 1, nil, true},
		{"oversize", slices.Concat(a, []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}), nil, 1, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReadAhead(iotest.HalfReader(bytes.NewReader(tt.stream)), 1, 64, 2, func([]byte) (int64, error) { return 2, tt.request })
			go r.run(nil)
			var n int
			var bad bool
			var err error
			for ch := range r.out {
				n += len(ch.msgs)
				err, bad = ch.err, ch.bad
				r.release(ch)
			}
			r.wait()
			if n != tt.msgs || bad != tt.bad || err == nil || tt.want != nil && err != tt.want {
				t.Errorf("%d messages, then %v (bad=%v); want %d, then %v (bad=%v)", n, err, bad, tt.msgs, tt.want, tt.bad)
			}
		})
	}
}

// FuzzReadAhead: for any bytes cut into any reads, the reader hands over
// the messages the framer frames, parsed, in order, and ends as the framer
// does: io.EOF between two messages, io.ErrUnexpectedEOF inside one, a
// malformed-message error where the framer or parseMessage fails.
func FuzzReadAhead(f *testing.F) {
	for _, tt := range entryCases {
		msg := entryMessage(9, tt.dn, tt.attrs...)
		f.Add(slices.Concat(msg, doneMessage(9, 0, "", []byte("c")), msg), []byte{3, 100})
	}
	f.Add(entryMessage(1, "uid=big", attr{"cn", []string{strings.Repeat("x", 500)}}), []byte{1})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		var want []framed
		var wantErr error
		wantBad := false
		fr := newFramer(bytes.NewReader(stream))
		for {
			msg, err := fr.next()
			if err != nil {
				wantErr, wantBad = err, err != io.EOF && err != io.ErrUnexpectedEOF
				break
			}
			m, err := parseMessage(msg)
			if err != nil {
				wantErr, wantBad = err, true
				break
			}
			want = append(want, framedOf(m))
		}
		var c []int
		for _, b := range cuts {
			c = append(c, int(b))
		}
		// No message ID of 4 bytes or less is 1<<40: the reader never
		// takes a Done for its page's and reads to the end.
		r := newReadAhead(&cutReader{b: stream, cuts: c}, 1<<40, 64, 3, func([]byte) (int64, error) {
			t.Error("asked for a next page")
			return 0, errors.New("no next page here")
		})
		go r.run(nil)
		var got []framed
		var err error
		bad := false
		for ch := range r.out {
			for _, m := range ch.msgs {
				got = append(got, framedOf(m))
			}
			if ch.err != nil {
				err, bad = ch.err, ch.bad
			}
			r.release(ch)
		}
		r.wait()
		if !slices.Equal(got, want) {
			t.Fatalf("%d messages, the framer %d; first difference at %d", len(got), len(want), firstDiff(got, want))
		}
		if bad != wantBad || !wantBad && err != wantErr || wantBad && err.Error() != wantErr.Error() {
			t.Fatalf("ended with %v (bad=%v), the framer with %v (bad=%v)", err, bad, wantErr, wantBad)
		}
	})
}

// FuzzMessageSize: messageSize agrees with the BER element reader on
// every prefix of any bytes: a size once the header is whole, 0 before.
func FuzzMessageSize(f *testing.F) {
	f.Add(person(1, "a"))
	f.Add(entryMessage(1, "uid=big", attr{"cn", []string{strings.Repeat("x", 70000)}}))
	f.Add([]byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		for n := range min(len(b), 8) + 1 {
			size, err := messageSize(b[:n])
			if err != nil || size == 0 {
				continue
			}
			// The header is whole: its size holds for every longer prefix.
			if longer, err := messageSize(b); longer != size || err != nil {
				t.Fatalf("%d bytes: size %d; all %d bytes: %d, %v", n, size, len(b), longer, err)
			}
			if size <= len(b) {
				tag, _, end, err := element(b[:size], 0)
				if err != nil || tag != tagSequence || end != size {
					t.Fatalf("size %d, element: tag 0x%02x end %d err %v", size, tag, end, err)
				}
			}
			return
		}
	})
}

// fakeLDAP is a server that answers a bind and then each search with the
// next of its pages, written as canned BER.
type fakeLDAP struct {
	url      string
	searches chan int64    // each search's message ID, as it arrives
	unbound  chan struct{} // closed on the Unbind
}

// fakePage writes the answers to the search with message ID id; false
// closes the connection after them.
type fakePage func(w io.Writer, id int64) bool

func fakeServer(t *testing.T, pages ...fakePage) *fakeLDAP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLDAP{url: "ldap://" + ln.Addr().String(), searches: make(chan int64, 1000), unbound: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fr := newFramer(c)
		for page := 0; ; {
			msg, err := fr.next()
			if err != nil {
				return
			}
			m, err := parseMessage(msg)
			if err != nil {
				return
			}
			switch m.op {
			case 0x60: // BindRequest
				c.Write(bindResponse(m.id))
			case 0x63: // SearchRequest
				f.searches <- m.id
				if page >= len(pages) || !pages[page](c, m.id) {
					return
				}
				page++
			case 0x42: // UnbindRequest
				close(f.unbound)
				return
			}
		}
	}()
	return f
}

// page answers with the named people, then a Done with cookie.
func page(cookie string, names ...string) fakePage {
	return func(w io.Writer, id int64) bool {
		for _, n := range names {
			w.Write(person(id, n))
		}
		var c []byte
		if cookie != "" {
			c = []byte(cookie)
		}
		w.Write(doneMessage(id, 0, "", c))
		return true
	}
}

func fakeSource(url string, timeout time.Duration) *Source {
	return &Source{cfg: Config{URL: url, BaseDN: "dc=x", Filter: "(objectClass=*)", PageSize: 2, Timeout: timeout}, log: slog.New(slog.DiscardHandler)}
}

// readersRunning counts the read-ahead goroutines alive.
//
// A reader closes its done channel from a deferred call, so the pull it
// served may return while run's frame is still on the reader's stack for
// a moment: the count is taken again until it is 0, for up to 5 s, and
// what remains then is a reader that did not end.
func readersRunning() int {
	buf := make([]byte, 1<<20)
	count := func() int { return strings.Count(string(buf[:runtime.Stack(buf, true)]), "(*readAhead).run(") }
	deadline := time.Now().Add(5 * time.Second)
	n := count()
	for n != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		n = count()
	}
	return n
}

// slowRecorder is an eventRecorder that takes its time over each record.
type slowRecorder struct {
	eventRecorder
	delay time.Duration
	after func(n int) // called after each record with how many there were
}

func (s *slowRecorder) Record(rec *connector.Record) error {
	time.Sleep(s.delay)
	s.eventRecorder.Record(rec)
	if s.after != nil {
		s.after(len(s.events))
	}
	return nil
}

// TestLeanFaults: the lean search against a server that fails in the ways
// a real one may, after entries were read.
func TestLeanFaults(t *testing.T) {
	names := func(ns ...string) []string {
		var out []string
		for _, n := range ns {
			out = append(out, personEvent(n))
		}
		return out
	}
	tests := []struct {
		name    string
		pages   []fakePage
		timeout time.Duration
		delay   time.Duration // per record
		want    []string      // events
		wantErr string        // "" for success
	}{
		{"complete", []fakePage{page("p1", "a", "b"), page("p2", "c", "d"), page("", "e")}, 0, 0,
			names("a", "b", "c", "d", "e"), ""},
		{"error result on a later page", []fakePage{page("p1", "a", "b"), page("p2", "c", "d"),
			func(w io.Writer, id int64) bool {
				w.Write(person(id, "e"))
				w.Write(doneMessage(id, 4, "too many", nil))
				return true
			}}, 0, 0,
			names("a", "b", "c", "d", "e"), "ldap: search on %s: size limit exceeded (LDAP result 4)"},
		{"closed mid-page", []fakePage{page("p1", "a", "b"),
			func(w io.Writer, id int64) bool {
				w.Write(person(id, "c"))
				d := person(id, "d")
				w.Write(d[:len(d)/2])
				return false
			}}, 0, 0,
			names("a", "b", "c"), "ldap: search on %s: the connection closed before the search ended (server stopped or restarted?)"},
		{"closed between pages", []fakePage{page("p1", "a", "b"), func(io.Writer, int64) bool { return false }}, 0, 0,
			names("a", "b"), "ldap: search on %s: the connection closed before the search ended (server stopped or restarted?)"},
		{"message of another ID", []fakePage{page("p1", "a"),
			func(w io.Writer, id int64) bool {
				w.Write(person(id, "b"))
				w.Write(person(id+5, "c"))
				return true
			}}, 0, 0,
			names("a", "b"), "ldap: search on %s: unexpected LDAP message (ID 8, operation 0x64)"},
		{"pause mid-page, fewer entries than a hand-over", []fakePage{page("p1", "a", "b"),
			func(w io.Writer, id int64) bool {
				w.Write(person(id, "c"))
				time.Sleep(150 * time.Millisecond)
				page("", "d")(w, id)
				return true
			}}, time.Second, 0,
			names("a", "b", "c", "d"), ""},
		{"slow consumer, short idle timeout", []fakePage{page("p1", "a", "b"), page("p2", "c", "d"), page("p3", "e", "f"), page("", "g")},
			100 * time.Millisecond, 40 * time.Millisecond,
			names("a", "b", "c", "d", "e", "f", "g"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fakeServer(t, tt.pages...)
			src := fakeSource(f.url, cmp.Or(tt.timeout, 5*time.Second))
			r := &slowRecorder{delay: tt.delay}
			p := &pull{s: src, key: "entryUUID", emit: r}
			err := p.pagedLean(context.Background(), "search", "dc=x", "(objectClass=*)", []string{"cn"})
			want := ""
			if tt.wantErr != "" {
				want = fmt.Sprintf(tt.wantErr, src.displayURL())
			}
			switch {
			case want == "" && err != nil, want != "" && (err == nil || !strings.HasPrefix(err.Error(), want)):
				t.Errorf("error = %v\nwant %s", err, cmp.Or(want, "none"))
			}
			if !slices.Equal(r.events, tt.want) {
				t.Errorf("events:\n %s\nwant\n %s", strings.Join(r.events, "\n "), strings.Join(tt.want, "\n "))
			}
			if n := readersRunning(); n != 0 {
				t.Errorf("%d read-ahead goroutines still running", n)
			}
		})
	}
}

// TestLeanEarlyStop: a pull that stops early (the limit, a cancelled
// context while the consumer is slow) ends its reader, even when the
// reader already asked for the next page.
func TestLeanEarlyStop(t *testing.T) {
	many := func(n int) []fakePage {
		var pages []fakePage
		for i := range n {
			cookie := fmt.Sprintf("p%d", i)
			if i == n-1 {
				cookie = ""
			}
			pages = append(pages, page(cookie, fmt.Sprintf("%da", i), fmt.Sprintf("%db", i)))
		}
		return pages
	}
	t.Run("limit with the next page requested", func(t *testing.T) {
		f := fakeServer(t, many(3)...)
		r := &slowRecorder{after: func(n int) {
			if n == 1 { // hold the consumer until the reader asked for page 2
				<-f.searches
				<-f.searches
			}
		}}
		p := &pull{s: fakeSource(f.url, 5*time.Second), key: "entryUUID", emit: r, limit: 2}
		err := p.pagedLean(context.Background(), "search", "dc=x", "(objectClass=*)", []string{"cn"})
		if !errors.Is(err, errLimit) || len(r.events) != 2 {
			t.Errorf("error %v after %d records, want the limit after 2", err, len(r.events))
		}
		if n := readersRunning(); n != 0 {
			t.Errorf("%d read-ahead goroutines still running", n)
		}
		select {
		case <-f.unbound:
		case <-time.After(5 * time.Second):
			t.Error("the server heard no Unbind")
		}
	})
	t.Run("cancelled while the consumer is slow", func(t *testing.T) {
		f := fakeServer(t, many(200)...)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := &slowRecorder{delay: 5 * time.Millisecond, after: func(n int) {
			if n == 5 {
				cancel()
			}
		}}
		p := &pull{s: fakeSource(f.url, 5*time.Second), key: "entryUUID", emit: r}
		start := time.Now()
		err := p.pagedLean(ctx, "search", "dc=x", "(objectClass=*)", []string{"cn"})
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "ldap: search on ") {
			t.Errorf("error = %v, want the search's context.Canceled", err)
		}
		if len(r.events) != 5 {
			t.Errorf("%d records after the cancellation at 5", len(r.events))
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the cancelled pull took %v", d)
		}
		if n := readersRunning(); n != 0 {
			t.Errorf("%d read-ahead goroutines still running", n)
		}
	})
}

// TestLeanSmallChunks: against slapd, with chunks far smaller than the
// entries, the lean pull still emits exactly what go-ldap's path emits.
func TestLeanSmallChunks(t *testing.T) {
	s := slapd(t)
	odd := odditiesOU(t, s)
	defer func(n int) { aheadChunk = n }(aheadChunk)
	for _, size := range []int{64, 333, 4096} {
		aheadChunk = size
		for _, base := range []string{bulk, odd} {
			t.Run(fmt.Sprintf("chunk=%d/%s", size, base), func(t *testing.T) {
				cfg := readerConfig(t, s, base)
				cfg.PageSize = 100
				src, _ := open(t, cfg)
				lean, ref := pullBoth(t, src, connector.PullRequest{AllAttributes: true})
				checkSame(t, lean, ref, 4)
			})
		}
	}
}
