package webexapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// client sends calls to the contacts API of one organization: at most
// requests_per_second, up to concurrency in flight, retried on throttling
// and transient failures within a budget of waiting time.
type client struct {
	base    string // https://webexapis.com/v1
	orgBase string // base + /contacts/organizations/{uuid}/contacts
	httpc   *http.Client
	auth    authenticator
	log     *slog.Logger
	timeout time.Duration
	sem     chan struct{}
	lim     *limiter
	maxWait time.Duration

	// now and sleep are the clock of retries and token expiry; tests
	// replace them so that no test sleeps through a Retry-After.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu     sync.Mutex
	waited time.Duration // spent waiting to retry since the run began
}

// statusError is an answer the API gave with a failure status.
type statusError struct {
	Status     int
	Message    string
	TrackingID string
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.TrackingID != "" {
		s += " (trackingId " + e.TrackingID + ")"
	}
	return s
}

// ambiguousError means a write may or may not have been applied: the
// connection failed or the server answered 5xx after the request was sent.
type ambiguousError struct{ err error }

func (e *ambiguousError) Error() string { return "outcome unknown: " + e.err.Error() }
func (e *ambiguousError) Unwrap() error { return e.err }

// budgetError says the run spent its max_wait.
type budgetError struct {
	what     string
	attempts int
	maxWait  time.Duration
	last     error
}

func (e *budgetError) Error() string {
	// No "webex: <call>:" prefix: every caller of do names the call.
	return fmt.Sprintf("gave up after %d attempts, the run's retry budget (max_wait %s) is spent; last error: %v",
		e.attempts, e.maxWait, e.last)
}
func (e *budgetError) Unwrap() error { return e.last }

type request struct {
	method string
	url    string // absolute
	body   any    // JSON-encoded when non-nil
	// idempotent calls are retried after 5xx and network errors; others
	// return an ambiguousError so that the caller can find out what happened.
	idempotent bool
	what       string // for errors: "bulk create of 100 contacts"
}

type response struct {
	status int
	header http.Header
	body   []byte
}

const (
	backoffBase = time.Second
	backoffCap  = time.Minute
	maxBody     = 64 << 20
)

// resetBudget starts a run's budget of waiting time.
func (c *client) resetBudget() {
	c.mu.Lock()
	c.waited = 0
	c.mu.Unlock()
}

// spend charges d to the run's budget, or says it is spent.
func (c *client) spend(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waited+d > c.maxWait {
		return false
	}
	c.waited += d
	return true
}

// do sends rq until it succeeds, fails for good, or the budget is spent.
func (c *client) do(ctx context.Context, rq request) (*response, error) {
	var payload []byte
	if rq.body != nil {
		var err error
		if payload, err = json.Marshal(rq.body); err != nil {
			return nil, fmt.Errorf("webex: %s: encode: %w", rq.what, err)
		}
	}
	renewed := false
	for attempt := 1; ; attempt++ {
		tok, err := c.auth.token(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.send(ctx, rq, payload, tok.Reveal())
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err() // the caller names the call
			}
			if !rq.idempotent {
				return nil, &ambiguousError{err}
			}
			wait = c.backoff(attempt)
		case resp.status >= 200 && resp.status < 300:
			return resp, nil
		case resp.status == http.StatusUnauthorized:
			if renewed {
				return nil, ErrTokenRejected
			}
			if err := c.auth.rejected(ctx, tok); err != nil {
				return nil, err
			}
			renewed = true
			continue
		case resp.status == http.StatusTooManyRequests || resp.status == http.StatusLocked:
			// Refused before processing: safe to resend even a create.
			err = apiError(resp)
			wait = retryAfter(resp.header, c.now())
			if wait < 0 {
				wait = c.backoff(attempt)
			}
		case resp.status == http.StatusBadGateway || resp.status == http.StatusServiceUnavailable ||
			resp.status == http.StatusGatewayTimeout || resp.status == http.StatusInternalServerError && rq.idempotent:
			err = apiError(resp)
			if !rq.idempotent {
				return nil, &ambiguousError{err}
			}
			if w := retryAfter(resp.header, c.now()); w >= 0 {
				wait = w
			} else {
				wait = c.backoff(attempt)
			}
		default:
			if resp.status >= 500 && !rq.idempotent {
				return nil, &ambiguousError{apiError(resp)}
			}
			return nil, apiError(resp)
		}
		if !c.spend(wait) {
			return nil, &budgetError{what: rq.what, attempts: attempt, maxWait: c.maxWait, last: err}
		}
		c.log.Debug("webex: retrying", "call", rq.what, "attempt", attempt, "wait", wait, "error", err)
		if err := c.sleep(ctx, wait); err != nil {
			return nil, err // the context's error; the caller names the call
		}
	}
}

// send makes one attempt, holding a concurrency slot and a rate slot.
func (c *client) send(ctx context.Context, rq request, payload []byte, token string) (*response, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()
	if err := c.lim.wait(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, rq.url, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpc.Do(req)
	if err != nil {
		return nil, redactURLError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// backoff is exponential with jitter, capped, so that many clients hit by
// one outage do not come back in step.
func (c *client) backoff(attempt int) time.Duration {
	d := backoffBase << min(attempt-1, 10)
	if d > backoffCap {
		d = backoffCap
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter reads Retry-After as seconds or an HTTP date; -1 if absent.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return -1
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return -1
}

// apiError reads the Webex error body ({message, errors[].description,
// trackingId}).
func apiError(r *response) *statusError {
	e := &statusError{Status: r.status}
	var b struct {
		Message string `json:"message"`
		Errors  []struct {
			Description string `json:"description"`
		} `json:"errors"`
		TrackingID string `json:"trackingId"`
	}
	if json.Unmarshal(r.body, &b) == nil {
		e.Message, e.TrackingID = b.Message, b.TrackingID
		if e.Message == "" && len(b.Errors) > 0 {
			e.Message = b.Errors[0].Description
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(r.status)
	}
	return e
}

func isStatus(err error, status ...int) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return false
	}
	for _, s := range status {
		if se.Status == s {
			return true
		}
	}
	return false
}

func (c *client) contactsURL(suffix string, q url.Values) string {
	u := c.orgBase + suffix
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// limiter spaces calls by 1/rate on the wall clock.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func newLimiter(perSecond float64) *limiter {
	return &limiter{interval: time.Duration(float64(time.Second) / perSecond)}
}

func (l *limiter) wait(ctx context.Context) error {
	l.mu.Lock()
	now := time.Now()
	t := l.next
	if t.Before(now) {
		t = now
	}
	l.next = t.Add(l.interval)
	l.mu.Unlock()
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
