package webexapi

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sinks/webexapi/simulator"
)

const (
	testOrg   = "0ae87ade-6c7a-4b6f-9d49-1b0e8a8f1c2d"
	testToken = "static-admin-token-s3cr3t"
)

// fakeClock is the retry clock of a test: sleeping moves it forward at once.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.slept += d
	return ctx.Err()
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Slept() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept
}

// env is a simulator on loopback and a sink pointed at it.
type env struct {
	sim   *simulator.Server
	srv   *httptest.Server
	sink  *Sink
	clock *fakeClock
	logs  *syncBuffer
	dir   string
	// bodies records the request bodies the simulator received.
	mu     sync.Mutex
	bodies map[string][][]byte
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type setup struct {
	sim    simulator.Options
	cfg    func(*Config)
	oauth  bool
	tokens string // token file content when not oauth (default testToken)
}

func newEnv(t testing.TB, st setup) *env {
	t.Helper()
	e := &env{clock: newFakeClock(), logs: &syncBuffer{}, dir: t.TempDir(), bodies: map[string][][]byte{}}
	st.sim.OrgID = testOrg
	if st.oauth {
		st.sim.ClientID, st.sim.ClientSecret, st.sim.RefreshToken = "client-1", "client-secret-s3cr3t", "refresh-0-s3cr3t"
	} else {
		st.sim.Token = testToken
	}
	st.sim.Now = e.clock.Now
	e.sim = simulator.New(st.sim)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		e.mu.Lock()
		e.bodies[r.URL.Path] = append(e.bodies[r.URL.Path], b)
		e.mu.Unlock()
		e.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)

	cfg := &Config{BaseURL: e.srv.URL + "/v1", OrgID: testOrg, RequestsPerSecond: 10000}
	if st.oauth {
		write(t, filepath.Join(e.dir, "client.secret"), st.sim.ClientSecret)
		write(t, filepath.Join(e.dir, "refresh.token"), st.sim.RefreshToken)
		cfg.OAuth = &OAuthConfig{ClientID: st.sim.ClientID, ClientSecretFile: "client.secret", RefreshTokenFile: "refresh.token"}
	} else {
		tok := st.tokens
		if tok == "" {
			tok = testToken
		}
		write(t, filepath.Join(e.dir, "webex.token"), tok)
		cfg.TokenFile = "webex.token"
	}
	if st.cfg != nil {
		st.cfg(cfg)
	}
	v := connector.NewValidator(e.dir)
	cfg.Validate(v)
	if err := v.Err(); err != nil {
		t.Fatalf("config: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sink, err := newSink(cfg, connector.Env{Job: "suppliers", Logger: logger}, e.srv.Client())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	sink.c.now, sink.c.sleep = e.clock.Now, e.clock.Sleep
	e.sink = sink
	return e
}

func write(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *env) requests(path string) [][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bodies["/v1/contacts/organizations/"+testOrg+"/contacts"+path]
}

func (e *env) apply(ctx context.Context, j *memJournal, changes ...connector.Change) (*memOut, error) {
	out := &memOut{bound: map[string]string{}, failed: map[string]string{}}
	_, err := e.sink.Apply(ctx, connector.RunInfo{Job: "suppliers", RunID: j.nextRun(), Journal: j}, memPlan(changes), out)
	return out, err
}

// memPlan is a slice-backed plan, in the order given.
type memPlan []connector.Change

func (p memPlan) Changes(fn func(*connector.Change) error) error {
	var ch connector.Change
	for _, c := range p {
		ch = c // the engine reuses its *Change: so do we
		if err := fn(&ch); err != nil {
			return err
		}
	}
	return nil
}

func (p memPlan) Rejected(func(connector.Rejection) error) error { return nil }

func (p memPlan) Counts() connector.Counts {
	var c connector.Counts
	for _, ch := range p {
		switch ch.Action {
		case connector.ActionCreate:
			c.Created++
		case connector.ActionUpdate:
			c.Updated++
		case connector.ActionDelete:
			c.Deleted++
		}
	}
	return c
}

// memJournal is a map-backed journal; nothing clears it but commit().
type memJournal struct {
	mu      sync.Mutex
	run     int64
	entries []connector.JournalEntry
	index   map[journalID]int
	intends int
}

type journalID struct {
	run int64
	key string
	op  connector.Action
}

func (j *memJournal) add(e connector.JournalEntry) {
	if j.index == nil {
		j.index = map[journalID]int{}
	}
	j.index[journalID{e.RunID, e.Key, e.Op}] = len(j.entries)
	j.entries = append(j.entries, e)
}

func (j *memJournal) nextRun() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.run++
	return j.run
}

func (j *memJournal) Intend(_ context.Context, _ string, es []connector.JournalEntry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, e := range es {
		j.add(e)
	}
	j.intends++
	return nil
}

func (j *memJournal) Answer(_ context.Context, _ string, es []connector.JournalEntry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	// Matched by run, key and operation, as the state does; an answer
	// without an intent is recorded all the same.
	for _, a := range es {
		id := journalID{a.RunID, a.Key, a.Op}
		if i, ok := j.index[id]; ok {
			j.entries[i].UUID = a.UUID
			continue
		}
		j.add(a)
	}
	return nil
}

func (j *memJournal) Open(context.Context, string) ([]connector.JournalEntry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]connector.JournalEntry(nil), j.entries...), nil
}

func (j *memJournal) has(key string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, e := range j.entries {
		if e.Key == key {
			return true
		}
	}
	return false
}

type memOut struct {
	mu     sync.Mutex
	bound  map[string]string
	failed map[string]string
}

func (o *memOut) Bound(key, uuid string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bound[key] = uuid
}

func (o *memOut) Failed(key, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failed[key] = reason
}

// person makes a contact with a display name, a work phone and an email.
func person(name, phone, email string) connector.Contact {
	var c connector.Contact
	c[connector.DisplayName] = name
	c[connector.Phone1], c[connector.Phone1Type] = phone, "work"
	c[connector.Email] = email
	return c
}

func create(key string, c connector.Contact) connector.Change {
	return connector.Change{Action: connector.ActionCreate, Key: key, Contact: c}
}

func update(key, uuid string, old, c connector.Contact) connector.Change {
	return connector.Change{Action: connector.ActionUpdate, Key: key, UUID: uuid, Contact: c, Old: old}
}

func del(key, uuid string, c connector.Contact) connector.Change {
	return connector.Change{Action: connector.ActionDelete, Key: key, UUID: uuid, Contact: c, Reason: "gone from source"}
}
