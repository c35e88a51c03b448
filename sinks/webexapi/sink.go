package webexapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// Sink writes a job's changes to the Webex organization-contacts API.
type Sink struct {
	cfg Config
	org string // organization UUID
	job string
	c   *client
	log *slog.Logger
}

var (
	_ connector.Sink    = (*Sink)(nil)
	_ connector.Checker = (*Sink)(nil)
	_ connector.Adopter = (*Sink)(nil)
	_ connector.Closer  = (*Sink)(nil)
)

// Close releases the idle connections of the sink's HTTP client, so that a
// daemon that reloads its configuration does not keep the old ones open.
func (s *Sink) Close() error {
	s.c.httpc.CloseIdleConnections()
	return nil
}

func open(cfg *Config, env connector.Env) (connector.Sink, error) {
	s, err := newSink(cfg, env, nil)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// newSink builds the sink; httpc may be nil for a default client.
func newSink(cfg *Config, env connector.Env, httpc *http.Client) (*Sink, error) {
	c := *cfg
	v := connector.NewValidator("")
	c.Validate(v) // fills defaults; idempotent on a validated config
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("webex: invalid configuration: %w", err)
	}
	org, err := OrgUUID(c.OrgID)
	if err != nil {
		return nil, fmt.Errorf("webex: org_id: %w", err)
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if httpc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = c.Concurrency
		httpc = &http.Client{Transport: tr}
	}
	cl := &client{
		base:    c.BaseURL,
		orgBase: c.BaseURL + "/contacts/organizations/" + org + "/contacts",
		httpc:   httpc,
		log:     log,
		timeout: c.Timeout,
		sem:     make(chan struct{}, c.Concurrency),
		lim:     newLimiter(c.RequestsPerSecond),
		maxWait: c.MaxWait,
		now:     time.Now,
		sleep:   sleepCtx,
	}
	if c.TokenFile != "" {
		tok, err := connector.ReadSecretFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("webex: token_file: %w", err)
		}
		cl.auth = staticToken{tok}
	} else {
		secret, err := connector.ReadSecretFile(c.OAuth.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("webex: oauth.client_secret_file: %w", err)
		}
		refresh, err := connector.ReadSecretFile(c.OAuth.RefreshTokenFile)
		if err != nil {
			return nil, fmt.Errorf("webex: oauth.refresh_token_file: %w", err)
		}
		cl.auth = &oauth{
			endpoint: c.BaseURL + "/access_token", clientID: c.OAuth.ClientID, clientSecret: secret,
			refreshFile: c.OAuth.RefreshTokenFile, refresh: refresh, httpc: httpc, log: log,
			now: func() time.Time { return cl.now() },
		}
	}
	return &Sink{cfg: c, org: org, job: env.Job, c: cl, log: log}, nil
}

// Check makes one read call (a search for one contact) to prove that the
// token and the organization id work.
func (s *Sink) Check(ctx context.Context) (string, error) {
	s.c.resetBudget()
	u := s.c.contactsURL("/search", url.Values{"limit": {"1"}, "source": {"CH"}})
	what := "GET " + u
	resp, err := s.c.do(ctx, request{method: http.MethodGet, url: u, idempotent: true, what: "check"})
	if err != nil {
		return what, fmt.Errorf("webex: check org %s: %w", s.org, err)
	}
	var page searchPage
	if err := json.Unmarshal(resp.body, &page); err != nil {
		return what, fmt.Errorf("webex: check org %s: unreadable search answer: %w", s.org, err)
	}
	return fmt.Sprintf("%s: HTTP %d, %d contacts with source CH", what, resp.status, page.Total), nil
}

// Existing hands every contact the organization holds with source CH to
// fn, for the engine to match against a job's creates.
func (s *Sink) Existing(ctx context.Context, fn func(uuid string, c *connector.Contact) error) error {
	s.c.resetBudget()
	return s.search(ctx, "", func(a *apiContact) error {
		if !strings.EqualFold(a.Source, "CH") {
			return nil
		}
		c := a.toContact()
		return fn(a.ContactID, &c)
	})
}

type searchPage struct {
	Result []*apiContact `json:"result"`
	Start  int           `json:"start"`
	Limit  int           `json:"limit"`
	Total  int           `json:"total"`
}

// searchLimit is the page size asked for; the API's maximum is unconfirmed.
const searchLimit = 100

// search pages through the contacts with source CH matching keyword
// (empty: all). It follows a Link rel="next" header when there is one, and
// otherwise advances start until total.
func (s *Sink) search(ctx context.Context, keyword string, fn func(*apiContact) error) error {
	q := url.Values{"keyword": {keyword}, "source": {"CH"}, "limit": {fmt.Sprint(searchLimit)}}
	next := s.c.contactsURL("/search", q)
	seen := map[string]bool{}
	for page := 1; next != ""; page++ {
		if seen[next] {
			return fmt.Errorf("webex: search: page %d links back to %s", page, next)
		}
		seen[next] = true
		resp, err := s.c.do(ctx, request{method: http.MethodGet, url: next, idempotent: true, what: fmt.Sprintf("search page %d", page)})
		if err != nil {
			return fmt.Errorf("webex: search: %w", err)
		}
		var p searchPage
		if err := json.Unmarshal(resp.body, &p); err != nil {
			return fmt.Errorf("webex: search page %d: unreadable answer: %w", page, err)
		}
		for _, a := range p.Result {
			if a == nil {
				continue
			}
			if err := fn(a); err != nil {
				return err
			}
		}
		cur := next
		next = ""
		if link := nextLink(resp.header); link != "" {
			base, _ := url.Parse(cur)
			if u, err := base.Parse(link); err == nil {
				next = u.String()
			}
		} else if len(p.Result) > 0 && p.Start+len(p.Result) < p.Total {
			q.Set("start", fmt.Sprint(p.Start+len(p.Result)))
			next = s.c.contactsURL("/search", q)
		}
	}
	return nil
}

// nextLink returns the target of a Link header's rel="next", or "".
func nextLink(h http.Header) string {
	for _, v := range h.Values("Link") {
		for _, part := range strings.Split(v, ",") {
			segs := strings.Split(part, ";")
			target := strings.TrimSpace(segs[0])
			if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			for _, p := range segs[1:] {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "rel") && strings.EqualFold(strings.Trim(val, `"`), "next") {
					return target[1 : len(target)-1]
				}
			}
		}
	}
	return ""
}

// describe names a contact in a reason: its display name and key.
func describe(ch *connector.Change) string {
	return fmt.Sprintf("%q (key %s)", ch.Contact[connector.DisplayName], ch.Key)
}

// samePhone compares numbers ignoring the spaces, dots and dashes of their
// formatting.
func samePhone(a, b string) bool {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == ' ' || r == '-' || r == '.' || r == '(' || r == ')' {
				return -1
			}
			return r
		}, s)
	}
	return a != "" && clean(a) == clean(b)
}

// matches is the adoption rule: same display name, and same phone number 1
// or same email.
func matches(want, got *connector.Contact) bool {
	if want[connector.DisplayName] != got[connector.DisplayName] {
		return false
	}
	if samePhone(want[connector.Phone1], got[connector.Phone1]) {
		return true
	}
	return want[connector.Email] != "" && strings.EqualFold(want[connector.Email], got[connector.Email])
}

// errStop ends a search early.
var errStop = errors.New("stop")
