package ldap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/contactsync/contactsync/connector"
	goldap "github.com/go-ldap/ldap/v3"
)

// Incremental modes.
const (
	modeNone     = ""
	modeSyncrepl = "syncrepl" // RFC 4533 refreshOnly against OpenLDAP syncprov
	modeUSN      = "usn"      // Active Directory uSNChanged + tombstones
)

// cursor is PullResult.Cursor, as JSON. Server ties it to the directory it
// came from (the suffix entry's entryUUID on OpenLDAP, the DC's
// invocationId on AD); Scope to what was asked (base, filter, key,
// attributes), because a cookie says nothing about entries the previous
// search did not select.
type cursor struct {
	V      int    `json:"v"`
	Mode   string `json:"mode"`
	Server string `json:"server"`
	Scope  string `json:"scope"`
	Cookie string `json:"cookie,omitempty"`
	USN    int64  `json:"usn,omitempty"`
}

func (c *cursor) encode() []byte {
	b, _ := json.Marshal(c)
	return b
}

// incrementalMode says how this server can be read incrementally with this
// key. Deletions arrive as entryUUIDs (syncrepl) or objectGUIDs
// (tombstones), so another key forces full pulls.
func (s *Source) incrementalMode(d *rootDSE, key string) string {
	if s.cfg.Incremental == "off" {
		return modeNone
	}
	switch {
	case d.ad && strings.EqualFold(key, "objectGUID"):
		return modeUSN
	case d.syncprov && strings.EqualFold(key, "entryUUID"):
		return modeSyncrepl
	}
	return modeNone
}

func (s *Source) scope(key string, attrs []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s", strings.ToLower(s.cfg.BaseDN), s.cfg.Filter, strings.ToLower(key), strings.Join(attrs, ","))
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// attributes are what the search asks for: the mapping's attributes and the
// key, sorted so that the scope hash is stable.
func attributes(req connector.PullRequest, key string) []string {
	set := map[string]bool{strings.ToLower(key): true}
	if req.AllAttributes {
		set["*"] = true
	}
	for _, a := range req.Attributes {
		if a = strings.ToLower(strings.TrimSpace(a)); a != "" && a != "dn" {
			set[a] = true
		}
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

var _ connector.IncrementalSource = (*Source)(nil)

// Incremental reports whether a pull with req reads only what changed: the
// run asks for it and the stored cursor is one of this source's. The
// server may still refuse the cursor, or the base or filter may have
// changed since; the pull is then a complete one.
func (s *Source) Incremental(req connector.PullRequest) bool {
	if s.cfg.Incremental == "off" || !req.FromCursor() {
		return false
	}
	var cur cursor
	return json.Unmarshal(req.Cursor, &cur) == nil && cur.V == 1 && (cur.Mode == modeSyncrepl || cur.Mode == modeUSN)
}

// Pull connects, binds and streams the records into emit: a paged search of
// everything, or the changes since req.Cursor when the server supports it.
func (s *Source) Pull(ctx context.Context, req connector.PullRequest, emit connector.Emitter) (connector.PullResult, error) {
	res := connector.PullResult{Identity: s.Identity()}
	conn, err := s.connect(ctx)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	d, err := s.readRootDSE(conn)
	if err != nil {
		return res, err
	}
	key := s.key(d)
	attrs := attributes(req, key)
	p := &pull{s: s, conn: conn, dse: d, key: key, attrs: attrs, emit: emit, limit: req.Limit,
		mode: s.incrementalMode(d, key), scope: s.scope(key, attrs)}

	var cur *cursor
	if len(req.Cursor) > 0 {
		cur = new(cursor)
		if err := json.Unmarshal(req.Cursor, cur); err != nil || cur.V != 1 {
			s.log.Info("ldap: stored cursor unreadable, reading everything", "url", s.displayURL())
			cur = nil
		}
	}
	why := ""
	switch {
	case p.mode == modeNone:
		why = "incremental off or not supported"
	case req.Full:
		why = "full pull requested"
	case req.Peek || req.Limit > 0:
		why = "peek"
	case cur == nil:
		why = "no cursor"
	case cur.Mode != p.mode || cur.Scope != p.scope:
		why = "base, filter, key or attributes changed since the cursor"
	}
	if why == "" {
		done, err := p.incremental(ctx, cur, &res)
		if err != nil || done {
			return res, err
		}
		why = p.fallback
	}
	s.log.Debug("ldap: full pull", "url", s.displayURL(), "reason", why)
	err = p.full(ctx, &res)
	return res, err
}

// pull is the state of one Pull.
type pull struct {
	s        *Source
	conn     *goldap.Conn
	dse      *rootDSE
	key      string
	attrs    []string
	emit     connector.Emitter
	limit    int
	mode     string
	scope    string
	fallback string // why an incremental pull turned into a full one

	n     int // records emitted
	pages int
	rec   connector.Record
}

var errLimit = errors.New("limit reached")

func (p *pull) incremental(ctx context.Context, cur *cursor, res *connector.PullResult) (bool, error) {
	switch p.mode {
	case modeSyncrepl:
		return p.syncrepl(ctx, cur, res)
	case modeUSN:
		return p.usn(ctx, cur, res)
	}
	p.fallback = "no incremental mode"
	return false, nil
}

// full reads everything with a paged search, over the lean client of
// wire.go (the entries are most of a run's volume). The incremental cursor
// is taken before the search, so that a change made while it runs is read
// again next time rather than missed.
func (p *pull) full(ctx context.Context, res *connector.PullResult) error {
	var next *cursor
	if p.mode != modeNone && p.limit == 0 {
		var err error
		if next, err = p.startCursor(); err != nil {
			p.s.log.Warn("ldap: cannot start an incremental cursor; the next pull will be full too", "url", p.s.displayURL(), "err", err)
			next = nil
		}
	}
	err := p.pagedLean(ctx, "search", p.s.cfg.BaseDN, p.s.cfg.Filter, p.attrs)
	if errors.Is(err, errLimit) {
		return nil
	}
	if err != nil {
		return err
	}
	res.Complete = p.limit == 0
	if next != nil {
		res.Cursor = next.encode()
	}
	return nil
}

func (p *pull) startCursor() (*cursor, error) {
	switch p.mode {
	case modeSyncrepl:
		return p.syncreplStart()
	case modeUSN:
		return p.usnStart()
	}
	return nil, nil
}

// watchdog cancels a streaming search that hears nothing from the server
// for the configured timeout. It runs only while the reader waits, so a
// slow consumer never counts against the server.
type watchdog struct {
	t     *time.Timer
	d     time.Duration
	fired atomic.Bool
}

func newWatchdog(d time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{d: d}
	w.t = time.AfterFunc(time.Hour, func() { w.fired.Store(true); cancel() })
	w.t.Stop()
	return w
}

func (w *watchdog) next(r goldap.Response) bool {
	w.t.Reset(w.d)
	ok := r.Next()
	w.t.Stop()
	return ok
}

// stream runs one search and hands each result to fn. It turns off the
// connection's request timeout (see connect) and uses the watchdog instead.
func (p *pull) stream(ctx context.Context, what string, req *goldap.SearchRequest, fn func(r goldap.Response) error) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.conn.SetTimeout(0)
	defer p.conn.SetTimeout(p.s.cfg.Timeout)
	w := newWatchdog(p.s.cfg.Timeout, cancel)
	resp := p.conn.SearchAsync(sctx, req, 64)
	for w.next(resp) {
		if ref := resp.Referral(); ref != "" && resp.Entry() == nil {
			p.s.log.Debug("ldap: search reference skipped", "url", p.s.displayURL(), "referral", ref)
			continue
		}
		if err := fn(resp); err != nil {
			cancel()
			// Drain so that the search goroutine ends before the connection closes.
			for resp.Next() {
			}
			return err
		}
	}
	if err := resp.Err(); err != nil {
		if goldap.IsErrorWithCode(err, goldap.LDAPResultReferral) {
			// The base itself lives elsewhere: reading nothing would look
			// like an empty directory, so it is an error, not a skip.
			return fmt.Errorf("ldap: %s on %s: the server refers base DN %q to another server (LDAP result 10); point url at the server that holds it: %w", what, p.s.displayURL(), p.s.cfg.BaseDN, err)
		}
		return p.s.searchError(what, err)
	}
	if w.fired.Load() {
		return fmt.Errorf("ldap: %s on %s: no answer from the server for %v (timeout)", what, p.s.displayURL(), p.s.cfg.Timeout)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ldap: %s on %s: %w", what, p.s.displayURL(), err)
	}
	// go-ldap ends a search on a connection it already found closed
	// without an error: a paged search cut between two pages would look
	// complete, and every entry of the missing pages would be deleted.
	if p.conn.IsClosing() {
		return fmt.Errorf("ldap: %s on %s: the connection closed before the search ended (server stopped or restarted?)", what, p.s.displayURL())
	}
	return nil
}

// paged streams a paged search of the base DN (RFC 2696): one page at a
// time is in flight, so memory does not grow with the directory.
func (p *pull) paged(ctx context.Context, what, base, filter string, attrs []string, controls []goldap.Control, fn func(*goldap.Entry) error) error {
	paging := goldap.NewControlPaging(uint32(p.s.cfg.PageSize))
	for {
		req := goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false,
			filter, attrs, append([]goldap.Control{paging}, controls...))
		var cookie []byte
		err := p.stream(ctx, what, req, func(r goldap.Response) error {
			if e := r.Entry(); e != nil {
				return fn(e)
			}
			if c, ok := goldap.FindControl(r.Controls(), goldap.ControlTypePaging).(*goldap.ControlPaging); ok {
				cookie = c.Cookie
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !p.nextPage(what, paging, cookie) {
			return nil
		}
	}
}

// entry turns an entry into a record and emits it, or rejects it when it
// has no key.
func (p *pull) entry(e *goldap.Entry) error {
	raw := e.GetEqualFoldRawAttributeValue(p.key)
	if len(raw) == 0 {
		return p.rejectNoKey(e.DN)
	}
	key := renderValue(p.key, raw)
	r := &p.rec
	r.Key, r.Origin = key, e.DN
	r.Names, r.Values = r.Names[:0], r.Values[:0]
	r.Names, r.Values = append(r.Names, "dn"), append(r.Values, e.DN)
	for _, a := range e.Attributes {
		if len(a.ByteValues) == 0 {
			continue
		}
		name := strings.ToLower(a.Name)
		if slices.Contains(r.Names, name) {
			continue
		}
		r.Names = append(r.Names, name)
		r.Values = append(r.Values, firstValue(name, a))
	}
	return p.emitRecord()
}

// emitRecord hands p.rec over, whichever decoder filled it, and counts it
// against the limit.
func (p *pull) emitRecord() error {
	if err := p.emit.Record(&p.rec); err != nil {
		return err
	}
	p.n++
	if p.limit > 0 && p.n >= p.limit {
		return errLimit
	}
	return nil
}

// rejectNoKey rejects the entry dn, which lacks the key attribute.
func (p *pull) rejectNoKey(dn string) error {
	return p.emit.Reject("", dn, fmt.Sprintf("entry %q has no %s attribute (the key)", dn, p.key))
}

// firstValue is renderValue of a's first value. go-ldap already holds that
// value as a string (Values), so a text value is taken from there rather
// than copied again: one allocation less per attribute and entry.
func firstValue(name string, a *goldap.EntryAttribute) string {
	if len(a.Values) > 0 && name != "objectguid" && name != "ms-ds-consistencyguid" {
		if v := a.Values[0]; len(v) == len(a.ByteValues[0]) && utf8.ValidString(v) {
			return v
		}
	}
	return renderValue(name, a.ByteValues[0])
}

// renderValue makes an attribute value text. GUID-valued attributes are
// rendered as GUID strings; other binary values as hex, so that a key is
// always printable and stable.
func renderValue(name string, b []byte) string {
	switch strings.ToLower(name) {
	case "objectguid", "ms-ds-consistencyguid":
		if len(b) == 16 {
			return FormatGUID(b)
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return hex.EncodeToString(b)
}

// FormatGUID renders an Active Directory GUID (objectGUID) in its standard
// form. Its first three fields are stored little-endian, so the bytes are
// not in the order the string shows them.
func FormatGUID(b []byte) string {
	if len(b) != 16 {
		return hex.EncodeToString(b)
	}
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15])
}

// nextPage counts a page whose results have all been read and reports
// whether the server has another, whose cookie it sets on paging.
func (p *pull) nextPage(what string, paging *goldap.ControlPaging, cookie []byte) bool {
	p.pages++
	if len(cookie) == 0 {
		p.s.log.Debug("ldap: "+what+" done", "url", p.s.displayURL(), "pages", p.pages, "records", p.n)
		return false
	}
	paging.SetCookie(cookie)
	return true
}
