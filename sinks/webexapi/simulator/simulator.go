// Package simulator is an in-process implementation of the Webex
// organization-contacts API (create, get, patch, delete, search, bulk,
// bulk delete) and of the OAuth refresh endpoint, with the validation the
// documented API applies, so that contactsync can be tested, and a job
// rehearsed, without a Webex organization.
//
// It rejects what the real API rejects (schemas as an array, a missing
// source, unknown phone types, a contact without phone, email or SIP address,
// a wrong token, an unknown org or contact) and can be told to answer 429,
// 503 or a per-item failure, to add latency, and to run a hook after a write
// was processed but before it is answered (a lost response).
//
// Serve it under "/v1": the handler expects paths as they appear below
// https://webexapis.com, e.g. /v1/contacts/organizations/{orgId}/contacts/bulk.
package simulator

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Server.
type Options struct {
	// OrgID is the organization UUID the server holds contacts for.
	OrgID string
	// Token is a static admin token that is always accepted ("" for none).
	Token string
	// ClientID, ClientSecret and RefreshToken let an OAuth integration get
	// access tokens from POST /v1/access_token. Each refresh issues a new
	// refresh token and invalidates the old one, so a client that does not
	// persist the newest one fails on its next start.
	ClientID, ClientSecret, RefreshToken string
	// TokenTTL is the lifetime of issued access tokens (default 1h).
	TokenTTL time.Duration
	// Latency is added to every request.
	Latency time.Duration
	// Rate429 and Rate5xx are the probabilities (0..1) that a request is
	// answered 429 (with RetryAfter seconds) or 503, before it is processed.
	Rate429, Rate5xx float64
	RetryAfter       int
	// Seed makes the injected failures reproducible.
	Seed int64
	// MaxBulk is the most items a bulk call accepts (default 1000; the real
	// limit is unconfirmed).
	MaxBulk int
	// NoLinkHeader leaves the Link header out of search answers, so that
	// clients must page with start/limit/total.
	NoLinkHeader bool
	// Now is the server's clock (default time.Now), for token expiry.
	Now func() time.Time
}

// Failure is a per-item failure the FailItem hook asks for.
type Failure struct {
	Status  int
	Code    string
	Message string
}

// Fault is a scripted answer to the next Times requests to Route (a route
// name as in Calls, "" for any), given before the request is processed.
type Fault struct {
	Route      string
	Status     int
	RetryAfter string
	Times      int
}

// Server is the simulated API. Its exported hooks may be set before it
// serves requests.
type Server struct {
	// FailItem, when set, is asked about every item of a bulk create or
	// update after validation; a non-nil Failure fails that item.
	FailItem func(c *Contact) *Failure
	// AfterWrite, when set, runs after a write was applied and before it is
	// answered. A test can cancel the client there to lose the answer.
	AfterWrite func(r *http.Request)

	opts Options
	mu   sync.Mutex
	rnd  *rand.Rand

	contacts map[string]*Contact
	order    []string // creation order, for stable paging
	access   map[string]time.Time
	refresh  string
	faults   []Fault
	calls    map[string]int
}

// New returns a server with no contacts.
func New(opts Options) *Server {
	if opts.TokenTTL == 0 {
		opts.TokenTTL = time.Hour
	}
	if opts.MaxBulk == 0 {
		opts.MaxBulk = 1000
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = 1
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{
		opts:     opts,
		rnd:      rand.New(rand.NewSource(opts.Seed)),
		contacts: map[string]*Contact{},
		access:   map[string]time.Time{},
		refresh:  opts.RefreshToken,
		calls:    map[string]int{},
	}
}

// Inject queues a scripted fault.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// Calls returns how many requests each route received, by route name:
// "create", "get", "patch", "delete", "search", "bulk", "bulk_delete",
// "access_token". Rejected and faulted requests count too.
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// WriteCalls counts the requests that may change contacts.
func (s *Server) WriteCalls() int {
	c := s.Calls()
	return c["create"] + c["patch"] + c["delete"] + c["bulk"] + c["bulk_delete"]
}

// ResetCalls zeroes the call counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
}

// RefreshToken returns the currently valid refresh token.
func (s *Server) RefreshToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh
}

// Put stores c as it is (a contact typed in by hand), assigning an id when
// it has none, and returns the id.
func (s *Server) Put(c Contact) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.ContactID == "" {
		c.ContactID = newUUID()
	}
	if c.Source == "" {
		c.Source = "CH"
	}
	c.Schemas, c.OrgID = Schema, s.opts.OrgID
	if _, ok := s.contacts[c.ContactID]; !ok {
		s.order = append(s.order, c.ContactID)
	}
	s.contacts[c.ContactID] = &c
	return c.ContactID
}

// Contacts returns a copy of every stored contact, in creation order.
func (s *Server) Contacts() []Contact {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Contact, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, *s.contacts[id])
	}
	return out
}

// Get returns a copy of one contact.
func (s *Server) Get(id string) (Contact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.contacts[id]
	if !ok {
		return Contact{}, false
	}
	return *c, true
}

// Len returns the number of stored contacts.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.order)
}

// SaveFile writes the contacts to a JSON file (temporary name, then rename).
func (s *Server) SaveFile(path string) error {
	b, err := json.MarshalIndent(s.Contacts(), "", "  ")
	if err != nil {
		return fmt.Errorf("simulator: save %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("simulator: save %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("simulator: save %s: %w", path, err)
	}
	return nil
}

// LoadFile reads contacts written by SaveFile; a missing file is no error.
func (s *Server) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("simulator: load %s: %w", path, err)
	}
	var cs []Contact
	if err := json.Unmarshal(b, &cs); err != nil {
		return fmt.Errorf("simulator: load %s: %w", path, err)
	}
	for _, c := range cs {
		s.Put(c)
	}
	return nil
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.opts.Latency > 0 {
		select {
		case <-time.After(s.opts.Latency):
		case <-r.Context().Done():
			return
		}
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1")
	if path == "/access_token" {
		s.count("access_token")
		if r.Method != http.MethodPost {
			writeError(w, 405, "method not allowed")
			return
		}
		if s.fault(w, "access_token") {
			return
		}
		s.accessToken(w, r)
		return
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 4 || parts[0] != "contacts" || parts[1] != "organizations" || parts[3] != "contacts" {
		writeError(w, 404, "no such resource")
		return
	}
	org, rest := parts[2], parts[4:]
	route := routeOf(r.Method, rest)
	s.count(route)
	if !s.authorized(r) {
		writeError(w, 401, "The request requires a valid access token set in the Authorization request header.")
		return
	}
	if s.fault(w, route) {
		return
	}
	if !uuidRE.MatchString(org) {
		writeError(w, 400, "orgId must be an organization UUID")
		return
	}
	if !strings.EqualFold(org, s.opts.OrgID) {
		writeError(w, 404, "organization not found")
		return
	}
	switch route {
	case "create":
		s.create(w, r)
	case "search":
		s.search(w, r)
	case "bulk":
		s.bulk(w, r)
	case "bulk_delete":
		s.bulkDelete(w, r)
	case "get", "patch", "delete":
		s.one(w, r, route, rest[0])
	default:
		writeError(w, 405, "method not allowed")
	}
}

func routeOf(method string, rest []string) string {
	switch {
	case len(rest) == 0 && method == http.MethodPost:
		return "create"
	case len(rest) == 1 && rest[0] == "search" && method == http.MethodGet:
		return "search"
	case len(rest) == 1 && rest[0] == "bulk" && method == http.MethodPost:
		return "bulk"
	case len(rest) == 2 && rest[0] == "bulk" && rest[1] == "delete" && method == http.MethodPost:
		return "bulk_delete"
	case len(rest) == 1 && method == http.MethodGet:
		return "get"
	case len(rest) == 1 && method == http.MethodPatch:
		return "patch"
	case len(rest) == 1 && method == http.MethodDelete:
		return "delete"
	}
	return "unknown"
}

func (s *Server) count(route string) {
	s.mu.Lock()
	s.calls[route]++
	s.mu.Unlock()
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Token != "" && tok == s.opts.Token {
		return true
	}
	exp, ok := s.access[tok]
	return ok && s.opts.Now().Before(exp)
}

// fault answers with a scripted or random fault, before anything is done.
func (s *Server) fault(w http.ResponseWriter, route string) bool {
	s.mu.Lock()
	var f *Fault
	for i := range s.faults {
		if s.faults[i].Route == "" || s.faults[i].Route == route {
			cp := s.faults[i]
			f = &cp
			if s.faults[i].Times--; s.faults[i].Times <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			break
		}
	}
	if f == nil && route != "access_token" {
		switch p := s.rnd.Float64(); {
		case p < s.opts.Rate429:
			f = &Fault{Status: 429, RetryAfter: strconv.Itoa(s.opts.RetryAfter)}
		case p < s.opts.Rate429+s.opts.Rate5xx:
			f = &Fault{Status: 503}
		}
	}
	s.mu.Unlock()
	if f == nil {
		return false
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	writeError(w, f.Status, http.StatusText(f.Status))
	return true
}

func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, 400, "bad form")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "refresh_token" {
		writeError(w, 400, "unsupported grant_type")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refresh == "" || f.Get("client_id") != s.opts.ClientID || f.Get("client_secret") != s.opts.ClientSecret ||
		f.Get("refresh_token") != s.refresh {
		writeError(w, 400, "invalid_grant")
		return
	}
	tok := "sim-access-" + newUUID()
	s.refresh = "sim-refresh-" + newUUID()
	s.access[tok] = s.opts.Now().Add(s.opts.TokenTTL)
	writeJSON(w, 200, map[string]any{
		"access_token":             tok,
		"expires_in":               int(s.opts.TokenTTL / time.Second),
		"refresh_token":            s.refresh,
		"refresh_token_expires_in": 7776000,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the shape of Webex API errors.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{
		"message":    msg,
		"errors":     []map[string]string{{"description": msg}},
		"trackingId": "SIM_" + newUUID(),
	})
}

func decode(r *http.Request, v any) *apiError {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return &apiError{status: 415, msg: "Content-Type must be application/json"}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid body: %v", err)
	}
	return nil
}

// decodeWrite decodes the body of a write request into v, then checks its
// schemas (a field of v, filled by the decoding), which writes require.
func decodeWrite(r *http.Request, v any, schemas *json.RawMessage) *apiError {
	if err := decode(r, v); err != nil {
		return err
	}
	return checkSchemas(*schemas, true)
}

func (s *Server) afterWrite(r *http.Request) {
	if s.AfterWrite != nil {
		s.AfterWrite(r)
	}
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var in inContact
	if err := decodeWrite(r, &in, &in.Schemas); err != nil {
		writeError(w, err.status, err.msg)
		return
	}
	s.mu.Lock()
	c, err := s.createLocked(&in)
	s.mu.Unlock()
	if err != nil {
		writeError(w, err.status, err.msg)
		return
	}
	s.afterWrite(r)
	writeJSON(w, 201, c)
}

func (s *Server) createLocked(in *inContact) (Contact, *apiError) {
	if in.ContactID != nil {
		return Contact{}, badRequest("contactId must not be set on a create")
	}
	c := Contact{}
	if err := apply(&c, in, true); err != nil {
		return Contact{}, err
	}
	now := s.opts.Now().UTC()
	c.ContactID, c.OrgID, c.Meta = newUUID(), s.opts.OrgID, &Meta{Created: now, LastModified: now}
	s.contacts[c.ContactID] = &c
	s.order = append(s.order, c.ContactID)
	return c, nil
}

func (s *Server) updateLocked(id string, in *inContact) (Contact, *apiError) {
	cur, ok := s.contacts[id]
	if !ok {
		return Contact{}, &apiError{status: 404, msg: fmt.Sprintf("contact %s not found", id)}
	}
	if cur.Source != "CH" {
		return Contact{}, &apiError{status: 403, msg: fmt.Sprintf("contact %s has source %s and is read-only", id, cur.Source)}
	}
	c := *cur
	if err := apply(&c, in, false); err != nil {
		return Contact{}, err
	}
	if c.Meta != nil {
		m := *c.Meta
		m.LastModified = s.opts.Now().UTC()
		c.Meta = &m
	}
	s.contacts[id] = &c
	return c, nil
}

func (s *Server) deleteLocked(id string) *apiError {
	c, ok := s.contacts[id]
	if !ok {
		return &apiError{status: 404, msg: fmt.Sprintf("contact %s not found", id)}
	}
	if c.Source != "CH" {
		return &apiError{status: 403, msg: fmt.Sprintf("contact %s has source %s and is read-only", id, c.Source)}
	}
	delete(s.contacts, id)
	for i, o := range s.order {
		if o == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	return nil
}

func (s *Server) one(w http.ResponseWriter, r *http.Request, route, id string) {
	switch route {
	case "get":
		c, ok := s.Get(id)
		if !ok {
			writeError(w, 404, "contact not found")
			return
		}
		writeJSON(w, 200, c)
	case "patch":
		var in inContact
		if err := decode(r, &in); err != nil {
			writeError(w, err.status, err.msg)
			return
		}
		s.mu.Lock()
		c, err := s.updateLocked(id, &in)
		s.mu.Unlock()
		if err != nil {
			writeError(w, err.status, err.msg)
			return
		}
		s.afterWrite(r)
		writeJSON(w, 200, c)
	case "delete":
		s.mu.Lock()
		err := s.deleteLocked(id)
		s.mu.Unlock()
		if err != nil {
			writeError(w, err.status, err.msg)
			return
		}
		s.afterWrite(r)
		w.WriteHeader(204)
	}
}

type failed struct {
	ID           string `json:"id"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
	StatusCode   int    `json:"statusCode"`
}

func (s *Server) bulk(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Schemas  json.RawMessage `json:"schemas"`
		Contacts []inContact     `json:"contacts"`
	}
	if err := decodeWrite(r, &in, &in.Schemas); err != nil {
		writeError(w, err.status, err.msg)
		return
	}
	if len(in.Contacts) == 0 {
		writeError(w, 400, "contacts is required")
		return
	}
	if len(in.Contacts) > s.opts.MaxBulk {
		writeError(w, 400, fmt.Sprintf("at most %d contacts per bulk request", s.opts.MaxBulk))
		return
	}
	out := make([]*Contact, len(in.Contacts))
	fails := []failed{}
	s.mu.Lock()
	for i := range in.Contacts {
		item := &in.Contacts[i]
		var c Contact
		var err *apiError
		if s.FailItem != nil {
			if f := s.FailItem(probeOf(item)); f != nil {
				err = &apiError{status: f.Status, msg: f.Message}
			}
		}
		if err == nil {
			if item.ContactID == nil {
				c, err = s.createLocked(item)
			} else {
				c, err = s.updateLocked(*item.ContactID, item)
			}
		}
		if err != nil {
			fails = append(fails, failed{ID: strconv.Itoa(i), ErrorCode: strconv.Itoa(err.status), ErrorMessage: err.msg, StatusCode: err.status})
			continue
		}
		out[i] = &c
	}
	s.mu.Unlock()
	s.afterWrite(r)
	writeJSON(w, 200, map[string]any{"contacts": out, "failedContacts": fails, "orgId": s.opts.OrgID})
}

// bulkDelete removes the listed contacts. Unknown ids are ignored: what the
// real endpoint does with them, and what it answers, is unconfirmed.
func (s *Server) bulkDelete(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Schemas   json.RawMessage `json:"schemas"`
		ObjectIDs []string        `json:"objectIds"`
	}
	if err := decodeWrite(r, &in, &in.Schemas); err != nil {
		writeError(w, err.status, err.msg)
		return
	}
	if len(in.ObjectIDs) == 0 || len(in.ObjectIDs) > s.opts.MaxBulk {
		writeError(w, 400, fmt.Sprintf("objectIds must hold 1 to %d ids", s.opts.MaxBulk))
		return
	}
	for i, id := range in.ObjectIDs {
		if !uuidRE.MatchString(id) {
			writeError(w, 400, fmt.Sprintf("objectIds[%d]: %q is not a UUID", i, id))
			return
		}
	}
	s.mu.Lock()
	for _, id := range in.ObjectIDs {
		if c, ok := s.contacts[id]; ok && c.Source == "CH" {
			_ = s.deleteLocked(id)
		}
	}
	s.mu.Unlock()
	s.afterWrite(r)
	w.WriteHeader(204)
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, start := 100, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, 400, "limit must be a non-negative number")
			return
		}
		limit = min(n, 1000)
	}
	if v := q.Get("start"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, 400, "start must be a non-negative number")
			return
		}
		start = n
	}
	source := q.Get("source")
	var groups []string
	if g := q.Get("groupIds"); g != "" {
		groups = strings.Split(g, ",")
	}
	s.mu.Lock()
	var hits []Contact
	for _, id := range s.order {
		c := s.contacts[id]
		if (source == "" || strings.EqualFold(c.Source, source)) && c.matches(q.Get("keyword")) && c.inGroups(groups) {
			hits = append(hits, *c)
		}
	}
	s.mu.Unlock()
	total := len(hits)
	page := hits[min(start, total):min(start+limit, total)]
	body := map[string]any{"start": start, "limit": limit, "total": total}
	if len(page) > 0 {
		// An empty page leaves "result" out, as the live API may.
		body["result"] = page
	}
	if !s.opts.NoLinkHeader && start+limit < total && limit > 0 {
		next := *r.URL
		nq := next.Query()
		nq.Set("start", strconv.Itoa(start+limit))
		nq.Set("limit", strconv.Itoa(limit))
		next.RawQuery = nq.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<http://%s%s>; rel="next"`, r.Host, next.RequestURI()))
	}
	writeJSON(w, 200, body)
}

// RevokeTokens invalidates every issued access token, as an admin revoking
// an integration's sessions would: the next call with one gets 401.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access = map[string]time.Time{}
}
