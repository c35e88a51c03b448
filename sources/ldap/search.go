package ldap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	goldap "github.com/go-ldap/ldap/v3"
)

// pagedLean is paged (RFC 2696) over a lean connection of its own (see
// wire.go). A reader goroutine reads the connection ahead and asks for the
// next page as soon as it has read the current one (readahead.go); each
// entry is decoded from the read buffer and emitted through p.entry's
// rules on this goroutine.
func (p *pull) pagedLean(ctx context.Context, what, base, filter string, attrs []string) error {
	c, err := p.s.dialWire(ctx)
	if err != nil {
		return err
	}
	where := p.s.displayURL()
	defer func() {
		c.close() // returns once the reader, if started, has ended
		if c.ra != nil && c.ra.mk != nil {
			p.s.log.Debug("ldap: "+what+" receive mark", "url", where, "misses", c.ra.mk.missed(), "given_up", c.ra.lw.off)
		}
	}()
	dec := newEntryDecoder(p.key)
	paging := goldap.NewControlPaging(uint32(p.s.cfg.PageSize))
	op, err := searchRequest(base, filter, attrs)
	if err != nil {
		return p.wireError(ctx, what, err)
	}
	req := op.Bytes() // the same for every page
	id, err := c.sendEncoded(req, []goldap.Control{paging}, c.timeout)
	if err != nil {
		return p.wireError(ctx, what, err)
	}
	ra := c.startReadAhead(id, int(p.s.cfg.PageSize), func(cookie []byte) (int64, error) {
		next := goldap.NewControlPaging(uint32(p.s.cfg.PageSize))
		next.SetCookie(cookie)
		return c.sendEncoded(req, []goldap.Control{next}, c.timeout)
	})
	for {
		ch := ra.receive()
		for _, m := range ch.msgs {
			select {
			case <-ctx.Done(): // the buffered chunks would hold the end back
				return p.wireError(ctx, what, ctx.Err())
			default:
			}
			cookie, done, err := p.leanMessage(dec, what, where, id, m)
			if err != nil {
				return err
			}
			if done {
				if !p.nextPage(what, paging, cookie) {
					return nil
				}
				// The reader asked for the next page with the next message
				// ID: it alone sends until close.
				id++
			}
		}
		if ch.err != nil {
			if ch.bad {
				return fmt.Errorf("ldap: %s on %s: %w", what, where, ch.err)
			}
			return p.wireError(ctx, what, ch.err)
		}
		ra.release(ch)
	}
}

// leanMessage handles one answer to the page with message ID id; done
// reports the page's SearchResultDone, with its paging cookie. where is
// displayURL, worked out once per search rather than per entry.
func (p *pull) leanMessage(dec *entryDecoder, what, where string, id int64, m message) (cookie []byte, done bool, err error) {
	if m.id != id {
		return nil, false, fmt.Errorf("ldap: %s on %s: %w", what, where, unexpected(m))
	}
	switch m.op {
	case tagSearchEntry:
		return nil, false, p.leanEntry(dec, m.body)
	case tagSearchReference:
		ref := ""
		if _, s, e, err := element(m.body, 0); err == nil {
			ref = string(m.body[s:e])
		}
		p.s.log.Debug("ldap: search reference skipped", "url", where, "referral", ref)
		return nil, false, nil
	case tagSearchDone:
		if err := resultError(m.body); err != nil {
			if goldap.IsErrorWithCode(err, goldap.LDAPResultReferral) {
				// The base itself lives elsewhere: reading nothing would
				// look like an empty directory, so it is an error.
				return nil, false, fmt.Errorf("ldap: %s on %s: the server refers base DN %q to another server (LDAP result 10); point url at the server that holds it: %w", what, where, p.s.cfg.BaseDN, err)
			}
			return nil, false, p.s.searchError(what, err)
		}
		controls, err := decodeControls(m.controls)
		if err != nil {
			return nil, false, fmt.Errorf("ldap: %s on %s: response controls: %w", what, where, err)
		}
		if pc, ok := goldap.FindControl(controls, goldap.ControlTypePaging).(*goldap.ControlPaging); ok {
			return pc.Cookie, true, nil
		}
		return nil, true, nil
	}
	return nil, false, fmt.Errorf("ldap: %s on %s: %w", what, where, unexpected(m))
}

// leanEntry is entry for an entry still in its wire form.
func (p *pull) leanEntry(dec *entryDecoder, body []byte) error {
	r := &p.rec
	hasKey, err := dec.decode(body, r)
	if err != nil {
		return fmt.Errorf("ldap: search on %s: entry: %w", p.s.displayURL(), err)
	}
	if !hasKey {
		return p.rejectNoKey(r.Origin)
	}
	return p.emitRecord()
}

// wireError explains a failed read or write during a search, as stream
// does for go-ldap: the context's end, the idle timeout, or a connection
// that ended before the search did (never a search that looks complete).
func (p *pull) wireError(ctx context.Context, what string, err error) error {
	where := p.s.displayURL()
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("ldap: %s on %s: %w", what, where, ctx.Err())
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("ldap: %s on %s: no answer from the server for %v (timeout)", what, where, p.s.cfg.Timeout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("ldap: %s on %s: the connection closed before the search ended (server stopped or restarted?)", what, where)
	case errors.Is(err, net.ErrClosed), errors.As(err, &ne):
		return fmt.Errorf("ldap: %s on %s: the connection closed before the search ended (server stopped or restarted?): %w", what, where, err)
	}
	return fmt.Errorf("ldap: %s on %s: %w", what, where, err)
}
