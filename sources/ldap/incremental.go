package ldap

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/contactsync/contactsync/connector"
	goldap "github.com/go-ldap/ldap/v3"
)

// readBase reads attributes of one entry.
func (p *pull) readBase(dn string, attrs []string, controls []goldap.Control) (*goldap.Entry, error) {
	req := goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, int(p.s.cfg.Timeout.Seconds()), false,
		"(objectClass=*)", attrs, controls)
	res, err := p.conn.Search(req)
	if err != nil {
		return nil, err
	}
	if len(res.Entries) == 0 {
		return nil, fmt.Errorf("%s: not found", dn)
	}
	return res.Entries[0], nil
}

// syncreplServer identifies the OpenLDAP database holding the base DN by
// the entryUUID of its suffix entry: replicas share it, a reloaded or
// different database does not. It also returns the suffix's contextCSN.
func (p *pull) syncreplServer() (server string, csns []string, err error) {
	nc := p.dse.namingContext(p.s.cfg.BaseDN)
	if nc == "" {
		return "", nil, fmt.Errorf("no naming context holds %q", p.s.cfg.BaseDN)
	}
	e, err := p.readBase(nc, []string{"entryUUID", "contextCSN"}, nil)
	if err != nil {
		return "", nil, fmt.Errorf("read %s: %w", nc, err)
	}
	server = e.GetAttributeValue("entryUUID")
	if server == "" {
		return "", nil, fmt.Errorf("%s has no entryUUID", nc)
	}
	return server, e.GetAttributeValues("contextCSN"), nil
}

// syncreplStart makes a cursor from the suffix's contextCSN, in the cookie
// syntax syncprov reads ("rid=000,csn=CSN[;CSN...]"). A paged search cannot
// carry the sync control (syncprov ignores paging then), so a full pull
// takes its cookie this way, before the search starts.
func (p *pull) syncreplStart() (*cursor, error) {
	server, csns, err := p.syncreplServer()
	if err != nil {
		return nil, err
	}
	if len(csns) == 0 {
		return nil, errors.New("the suffix has no contextCSN (is syncprov configured on this database?)")
	}
	return &cursor{V: 1, Mode: modeSyncrepl, Server: server, Scope: p.scope,
		Cookie: "rid=000,csn=" + strings.Join(csns, ";")}, nil
}

// errPresentPhase stops a sync refresh as soon as the server shows it is
// answering with a present phase: the full pull that must follow reads
// everything anyway.
var errPresentPhase = errors.New("present phase")

// syncrepl runs an RFC 4533 refreshOnly search from the cursor's cookie.
// With a session log, syncprov names deleted entries (delete phase) and
// the pull is incremental. Without one, it answers with a present phase:
// deletions are "whatever was not named present", which needs the whole
// previous population, so the pull goes on as a full one. It returns false
// with p.fallback set when a full pull must follow.
func (p *pull) syncrepl(ctx context.Context, cur *cursor, res *connector.PullResult) (bool, error) {
	server, _, err := p.syncreplServer()
	if err != nil {
		p.fallback = "cannot identify the server: " + err.Error()
		return false, nil
	}
	if server != cur.Server {
		p.fallback = "the cursor belongs to another directory"
		p.s.log.Info("ldap: stored cursor is from another directory, reading everything", "url", p.s.displayURL())
		return false, nil
	}
	cookie := []byte(cur.Cookie)
	present := false
	req := goldap.NewSearchRequest(p.s.cfg.BaseDN, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false,
		p.s.cfg.Filter, p.attrs, []goldap.Control{goldap.NewControlSyncRequest(goldap.SyncRequestModeRefreshOnly, cookie, false)})
	setCookie := func(c []byte) {
		if len(c) > 0 {
			cookie = c
		}
	}
	err = p.stream(ctx, "sync refresh", req, func(r goldap.Response) error {
		if e := r.Entry(); e != nil {
			st, _ := goldap.FindControl(r.Controls(), goldap.ControlTypeSyncState).(*goldap.ControlSyncState)
			if st == nil {
				return p.entry(e)
			}
			setCookie(st.Cookie)
			switch st.State {
			case goldap.SyncStatePresent:
				present = true
				return errPresentPhase
			case goldap.SyncStateDelete:
				return p.emit.Delete(st.EntryUUID.String(), e.DN)
			}
			return p.entry(e)
		}
		for _, c := range r.Controls() {
			switch c := c.(type) {
			case *goldap.ControlSyncInfo:
				switch {
				case c.NewCookie != nil:
					setCookie(c.NewCookie.Cookie)
				case c.RefreshDelete != nil:
					setCookie(c.RefreshDelete.Cookie)
				case c.RefreshPresent != nil:
					present = true
					return errPresentPhase
				case c.SyncIdSet != nil:
					setCookie(c.SyncIdSet.Cookie)
					if !c.SyncIdSet.RefreshDeletes {
						present = true
						return errPresentPhase
					}
					for _, u := range c.SyncIdSet.SyncUUIDs {
						if err := p.emit.Delete(u.String(), "entryUUID "+u.String()); err != nil {
							return err
						}
					}
				}
			case *goldap.ControlSyncDone:
				setCookie(c.Cookie)
				if !c.RefreshDeletes {
					present = true
				}
			}
		}
		return nil
	})
	switch {
	case goldap.IsErrorAnyOf(err, goldap.LDAPResultSyncRefreshRequired, goldap.LDAPResultUnwillingToPerform):
		// 4096 is e-syncRefreshRequired; syncprov says 53 "consumer state
		// is newer than provider" after a restore from an older backup.
		p.fallback = "the server refused the cookie"
		p.s.log.Info("ldap: server refused the sync cookie, reading everything", "url", p.s.displayURL(), "err", err)
		return false, nil
	case err != nil && !errors.Is(err, errPresentPhase):
		return false, err
	case present:
		p.fallback = "the server answered with a present phase (no syncprov-sessionlog covering the cursor)"
		p.s.log.Info("ldap: sync refresh without a session log cannot name deletions, reading everything", "url", p.s.displayURL())
		return false, nil
	}
	next := *cur
	next.Cookie = string(cookie)
	res.Cursor = next.encode()
	res.Complete = false
	p.s.log.Debug("ldap: incremental sync refresh", "url", p.s.displayURL(), "records", p.n)
	return true, nil
}

// usnServer identifies the domain controller by its invocationId, which
// changes when the DC is restored: uSNChanged values are local to a DC.
func (p *pull) usnServer() (string, int64, error) {
	if p.dse.dsServiceName == "" {
		return "", 0, errors.New("the root DSE has no dsServiceName")
	}
	usn, err := strconv.ParseInt(p.dse.highestUSN, 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("highestCommittedUSN %q: %w", p.dse.highestUSN, err)
	}
	e, err := p.readBase(p.dse.dsServiceName, []string{"invocationId"}, nil)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", p.dse.dsServiceName, err)
	}
	raw := e.GetRawAttributeValue("invocationId")
	if len(raw) == 0 {
		return "", 0, fmt.Errorf("%s has no invocationId", p.dse.dsServiceName)
	}
	return FormatGUID(raw), usn, nil
}

// usnStart makes a cursor from the highestCommittedUSN read in the root DSE
// at the start of the pull.
func (p *pull) usnStart() (*cursor, error) {
	server, usn, err := p.usnServer()
	if err != nil {
		return nil, err
	}
	return &cursor{V: 1, Mode: modeUSN, Server: server, Scope: p.scope, USN: usn}, nil
}

// usn reads what changed on this domain controller since the cursor:
// entries under the base whose uSNChanged is newer (added, modified, moved
// or renamed into it), then tombstones, which keep their objectGUID. An
// entry moved out of the base or out of the filter is not seen here: the
// periodic full pull (full_schedule) catches it.
func (p *pull) usn(ctx context.Context, cur *cursor, res *connector.PullResult) (bool, error) {
	server, usn, err := p.usnServer()
	if err != nil {
		p.fallback = "cannot identify the domain controller: " + err.Error()
		return false, nil
	}
	if server != cur.Server {
		p.fallback = "the cursor belongs to another domain controller (or it was restored)"
		p.s.log.Info("ldap: stored cursor is from another domain controller, reading everything", "url", p.s.displayURL())
		return false, nil
	}
	if usn < cur.USN {
		p.fallback = "the domain controller's USN went backwards"
		return false, nil
	}
	since := fmt.Sprintf("(uSNChanged>=%d)", cur.USN+1)
	if err := p.paged(ctx, "search changes", p.s.cfg.BaseDN, "(&"+p.s.cfg.Filter+since+")", p.attrs, nil, p.entry); err != nil {
		return false, err
	}
	if nc := p.dse.namingContext(p.s.cfg.BaseDN); nc != "" {
		show := &goldap.ControlString{ControlType: oidShowDeleted, Criticality: true}
		err := p.paged(ctx, "search tombstones", nc, "(&(isDeleted=TRUE)"+since+")", []string{"objectGUID"}, []goldap.Control{show},
			func(e *goldap.Entry) error {
				raw := e.GetRawAttributeValue("objectGUID")
				if len(raw) != 16 {
					return nil
				}
				return p.emit.Delete(FormatGUID(raw), e.DN)
			})
		if err != nil {
			if ctx.Err() != nil {
				return false, err
			}
			p.s.log.Warn("ldap: cannot read deleted objects; deletions will be seen by the next full pull (full_schedule)", "url", p.s.displayURL(), "err", err)
		}
	}
	next := *cur
	next.USN = usn
	res.Cursor = next.encode()
	res.Complete = false
	return true, nil
}
