package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestLowWater(t *testing.T) {
	const entry = 400 // bytes per entry message
	// page reads n entries of the current page.
	page := func(n int) func(*lowWater) {
		return func(w *lowWater) {
			for range n {
				w.entry(entry)
			}
		}
	}
	for _, tt := range []struct {
		name    string
		steps   []func(*lowWater)
		partial int
		misses  int // the reader's misses now
		want    int
	}{
		{name: "no entry read yet", want: 1},
		{name: "early in a page: the most", steps: []func(*lowWater){page(10)}, want: markMax},
		{name: "the page's last entries: any byte", steps: []func(*lowWater){page(490)}, want: 1},
		{name: "what the page still holds, less the part read", steps: []func(*lowWater){page(450)}, partial: 300, want: 50*entry - 300},
		{name: "a miss in this page", steps: []func(*lowWater){page(10)}, misses: 1, want: 1},
		{name: "the next page tries again", steps: []func(*lowWater){page(500), func(w *lowWater) { w.next(1) }, page(10)}, misses: 1, want: markMax},
		// A server that caps its pages at 100: the second page is sized
		// from the first.
		{name: "a short page sizes the next", steps: []func(*lowWater){page(100), func(w *lowWater) { w.next(0) }, page(70)}, want: 30 * entry},
		{name: "given up after pages in a row that missed", steps: []func(*lowWater){missedPages(0, markGiveUp), page(10)}, misses: markGiveUp, want: 1},
		{name: "a page without a miss ends the streak", steps: []func(*lowWater){missedPages(0, markGiveUp-1), page(500),
			func(w *lowWater) { w.next(markGiveUp - 1) }, missedPages(markGiveUp-1, 1), page(10)}, misses: markGiveUp, want: markMax},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := lowWater{page: 500}
			for _, step := range tt.steps {
				step(&w)
			}
			if got := w.mark(tt.partial, tt.misses); got != tt.want {
				t.Errorf("mark = %d, want %d (%+v)", got, tt.want, w)
			}
		})
	}
}

// missedPages reads n full pages that each missed the mark once, the
// reader having missed it from times before.
func missedPages(from, n int) func(*lowWater) {
	return func(w *lowWater) {
		for i := range n {
			for range 500 {
				w.entry(400)
			}
			w.next(from + i + 1)
		}
	}
}

// TestReceiveMark: a read held back by the mark still returns what is
// queued once it waited markWait, and the mark is then dropped; a
// connection that cannot have a mark reads as before.
func TestReceiveMark(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_RCVLOWAT is used on Linux only")
	}
	pair := func(t *testing.T) (client, server net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			accepted <- c
		}()
		client, err = net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server = <-accepted
		if server == nil {
			t.Fatal("accept failed")
		}
		t.Cleanup(func() { client.Close(); server.Close() })
		return client, server
	}
	t.Run("fewer bytes than the mark", func(t *testing.T) {
		c, s := pair(t)
		r := &idleReader{c: c, timeout: 10 * time.Second}
		r.setMark(markMax)
		if r.mark != markMax {
			t.Fatalf("mark = %d, want %d", r.mark, markMax)
		}
		go func() {
			// Most often after the read began to wait, so that it misses
			// the mark; a write before it makes the read return at once.
			time.Sleep(10 * time.Millisecond)
			s.Write(make([]byte, 1000))
		}()
		n, err := io.ReadFull(r, make([]byte, 1000))
		if n != 1000 || err != nil {
			t.Fatalf("read %d bytes, %v", n, err)
		}
		if r.missed() > 0 && r.mark != 1 {
			t.Errorf("mark %d after a miss, want 1", r.mark)
		}
		t.Logf("misses: %d", r.missed())
	})
	t.Run("the mark reached", func(t *testing.T) {
		c, s := pair(t)
		r := &idleReader{c: c, timeout: 10 * time.Second}
		r.setMark(markMax)
		if _, err := s.Write(make([]byte, 2*markMax)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, make([]byte, markMax)); err != nil {
			t.Fatal(err)
		}
		if r.missed() != 0 {
			t.Errorf("misses %d, want 0", r.missed())
		}
	})
	t.Run("the server says nothing: the idle timeout still ends the read", func(t *testing.T) {
		c, _ := pair(t)
		r := &idleReader{c: c, timeout: 50 * time.Millisecond}
		r.setMark(markMax)
		_, err := r.Read(make([]byte, 100))
		if !errors.Is(err, os.ErrDeadlineExceeded) || r.missed() != 1 {
			t.Errorf("err %v, misses %d; want the deadline and 1 miss", err, r.missed())
		}
	})
	t.Run("the read-ahead marks through its reader", func(t *testing.T) {
		c, _ := pair(t)
		ra := newReadAhead(&idleReader{c: c, timeout: time.Second}, 1, 64, 1, nil)
		if ra.mk == nil {
			t.Fatal("an idleReader's read-ahead has no marker")
		}
		if ra := newReadAhead(c, 1, 64, 1, nil); ra.mk != nil {
			t.Fatal("a plain reader's read-ahead has a marker")
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		c, s := net.Pipe()
		defer c.Close()
		defer s.Close()
		r := &idleReader{c: c, timeout: 10 * time.Second}
		r.setMark(markMax)
		go s.Write([]byte("x"))
		if n, err := r.Read(make([]byte, 10)); n != 1 || err != nil || r.mark > 1 {
			t.Errorf("read %d, %v, mark %d; want 1 byte, no mark", n, err, r.mark)
		}
	})
	t.Run("StartTLS: the mark is the TCP connection's", func(t *testing.T) {
		src, _ := open(t, readerConfig(t, slapd(t), bulk))
		c, err := src.dialWire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		if _, ok := c.nc.(*tls.Conn); !ok {
			t.Fatalf("connection is %T, want TLS", c.nc)
		}
		r := &idleReader{c: c.nc, timeout: 100 * time.Millisecond}
		r.setMark(markMax)
		if r.mark != markMax {
			t.Fatalf("mark = %d, want %d", r.mark, markMax)
		}
		// The server says nothing after the bind: the read misses the
		// mark, then times out; TLS must survive both.
		if _, err := r.Read(make([]byte, 100)); !errors.Is(err, os.ErrDeadlineExceeded) || r.missed() != 1 {
			t.Fatalf("err %v, misses %d; want the deadline and 1 miss", err, r.missed())
		}
		op, err := searchRequest(bulk, "(objectClass=inetOrgPerson)", []string{"cn"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.sendEncoded(op.Bytes(), nil, time.Second); err != nil {
			t.Fatal(err)
		}
		r.timeout = 10 * time.Second
		if n, err := r.Read(make([]byte, 64<<10)); n == 0 || err != nil {
			t.Errorf("read after the miss: %d bytes, %v", n, err)
		}
	})
}
