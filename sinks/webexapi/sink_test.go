package webexapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sinks/webexapi/simulator"
)

func TestOAuthRefresh(t *testing.T) {
	e := newEnv(t, setup{oauth: true, sim: simulator.Options{TokenTTL: time.Hour}})
	refreshFile := filepath.Join(e.dir, "refresh.token")
	ctx := context.Background()
	steps := []struct {
		name        string
		before      func()
		wantRefresh int // refresh calls so far
	}{
		{"first call gets a token", nil, 1},
		{"token still valid", func() { e.clock.Advance(30 * time.Minute) }, 1},
		{"refreshed before expiry", func() { e.clock.Advance(26 * time.Minute) }, 2},
		{"refreshed once on 401", e.sim.RevokeTokens, 3},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.before != nil {
				st.before()
			}
			c := person(fmt.Sprint("Contact ", i), fmt.Sprintf("+3314000000%d", i), "")
			out, err := e.apply(ctx, &memJournal{}, create(fmt.Sprint("k", i), c))
			if err != nil || len(out.bound) != 1 {
				t.Fatalf("err %v bound %v", err, out.bound)
			}
			if got := e.sim.Calls()["access_token"]; got != st.wantRefresh {
				t.Errorf("refresh calls = %d, want %d", got, st.wantRefresh)
			}
			b, err := os.ReadFile(refreshFile)
			if err != nil || strings.TrimSpace(string(b)) != e.sim.RefreshToken() {
				t.Errorf("refresh_token_file holds %q (%v), the server expects the newest", b, err)
			}
			if fi, err := os.Stat(refreshFile); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("refresh_token_file mode %v (%v), want 0600", fi.Mode().Perm(), err)
			}
		})
	}
	// A restarted process starts from the persisted refresh token.
	e2sink, err := newSink(&e.sink.cfg, connector.Env{Job: "suppliers"}, e.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e2sink.Check(ctx); err != nil {
		t.Errorf("after a restart: %v", err)
	}
	entries, _ := os.ReadDir(e.dir)
	for _, en := range entries {
		if strings.Contains(en.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", en.Name())
		}
	}
	assertNoSecrets(t, e.logs.String(), "client-secret-s3cr3t", e.sim.RefreshToken(), "refresh-0-s3cr3t", "sim-access-")
}

func TestTokenRejected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		oauth  bool
		break_ func(e *env)
		want   string
	}{
		{"static token wrong", false, nil, "webex: token rejected (401)"},
		{"refresh token revoked", true, func(e *env) { write(t, filepath.Join(e.dir, "refresh.token"), "refresh-revoked") }, "oauth refresh at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := setup{oauth: tc.oauth}
			if !tc.oauth {
				st.tokens = "wrong-token-s3cr3t"
			}
			e := newEnv(t, st)
			if tc.break_ != nil {
				tc.break_(e)
				s, err := newSink(&e.sink.cfg, connector.Env{Job: "suppliers"}, e.srv.Client())
				if err != nil {
					t.Fatal(err)
				}
				e.sink = s
			}
			_, err := e.apply(context.Background(), &memJournal{}, create("a", person("Acme", "+33140000001", "")))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if !tc.oauth && !errors.Is(err, ErrTokenRejected) {
				t.Errorf("err %v is not ErrTokenRejected", err)
			}
			assertNoSecrets(t, err.Error(), "wrong-token-s3cr3t", "refresh-revoked", "client-secret-s3cr3t")
			if e.sim.Len() != 0 {
				t.Error("a contact was created")
			}
		})
	}
}

func assertNoSecrets(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("a secret (%d bytes) appears in the output", len(s))
		}
	}
}

func TestExistingPages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noLink bool
		n      int
	}{
		{"Link header", false, 250},
		{"start limit total", true, 250},
		{"exact pages", true, 200},
		{"empty org", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, setup{sim: simulator.Options{NoLinkHeader: tc.noLink}})
			for i := 0; i < tc.n; i++ {
				e.sim.Put(simulator.Contact{DisplayName: fmt.Sprint("Hand ", i), Emails: []simulator.Item{{Value: fmt.Sprintf("h%d@example.com", i), Type: "WORK", Primary: true}},
					PhoneNumbers: []simulator.Item{{Value: "+3310000", Type: "MOBILE"}}})
			}
			e.sim.Put(simulator.Contact{DisplayName: "From LDAP", Source: "LDAP", Emails: []simulator.Item{{Value: "l@example.com", Type: "work"}}})
			seen := map[string]bool{}
			err := e.sink.Existing(context.Background(), func(uuid string, c *connector.Contact) error {
				if seen[uuid] {
					t.Errorf("%s handed over twice", uuid)
				}
				seen[uuid] = true
				if c[connector.Phone1Type] != "mobile" || !strings.HasPrefix(c[connector.Email], "h") {
					t.Errorf("contact parsed as %q", c)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != tc.n {
				t.Errorf("%d contacts, want %d (source CH only)", len(seen), tc.n)
			}
			if want := max(1, (tc.n+searchLimit-1)/searchLimit); e.sim.Calls()["search"] != want {
				t.Errorf("search calls = %d, want %d", e.sim.Calls()["search"], want)
			}
			if e.sim.WriteCalls() != 0 {
				t.Error("Existing wrote")
			}
		})
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t, setup{})
	e.sim.Put(simulator.Contact{DisplayName: "A", Emails: []simulator.Item{{Value: "a@example.com", Type: "work"}}})
	got, err := e.sink.Check(context.Background())
	if err != nil || !strings.Contains(got, "HTTP 200, 1 contacts") || e.sim.Calls()["search"] != 1 || len(e.sim.Calls()) != 1 {
		t.Errorf("Check = %q, %v; calls %v", got, err, e.sim.Calls())
	}
	e.sink.org = "11111111-2222-4333-8444-555555555555"
	e.sink.c.orgBase = e.sink.cfg.BaseURL + "/contacts/organizations/" + e.sink.org + "/contacts"
	if _, err := e.sink.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("unknown org: %v", err)
	}
	assertNoSecrets(t, got+e.logs.String(), testToken)
}

func TestOrgUUID(t *testing.T) {
	const u = "0ae87ade-6c7a-4b6f-9d49-1b0e8a8f1c2d"
	hydra := base64.RawStdEncoding.EncodeToString([]byte("ciscospark://us/ORGANIZATION/" + u))
	for _, tc := range []struct{ in, want, err string }{
		{u, u, ""},
		{strings.ToUpper(u), u, ""},
		{hydra, u, ""},
		{base64.StdEncoding.EncodeToString([]byte("ciscospark://us/ORGANIZATION/" + u)), u, ""},
		{base64.RawStdEncoding.EncodeToString([]byte("ciscospark://us/PEOPLE/" + u)), "", "does not end in /ORGANIZATION/"},
		{"Y2!!!", "", "not valid base64"},
		{"acme", "", "neither"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := OrgUUID(tc.in)
			if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("OrgUUID = %q, %v; want %q, %q", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"defaults", Config{OrgID: testOrg, TokenFile: "t"}, nil},
		{"nothing", Config{}, []string{"sink.webex.org_id: must be set", "sink.webex: one of token_file or oauth must be set"}},
		{"both auths", Config{OrgID: testOrg, TokenFile: "t", OAuth: &OAuthConfig{}}, []string{"sink.webex: set token_file or oauth, not both"}},
		{"oauth incomplete", Config{OrgID: testOrg, OAuth: &OAuthConfig{ClientID: "c"}}, []string{
			"sink.webex.oauth.client_secret_file: must be set", "sink.webex.oauth.refresh_token_file: must be set"}},
		{"bad values", Config{BaseURL: "ftp://x", OrgID: "acme", TokenFile: "t", BatchSize: 5000, RequestsPerSecond: -1, Concurrency: -2, Timeout: -1, MaxWait: -1}, []string{
			"sink.webex.base_url: must be an http(s) URL", "sink.webex.org_id: \"acme\"", "sink.webex.batch_size: must be between 1 and 1000",
			"sink.webex.requests_per_second", "sink.webex.concurrency", "sink.webex.timeout", "sink.webex.max_wait"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := connector.NewValidator("/etc/contactsync")
			c := tc.cfg
			c.Validate(v.At("sink").At("webex"))
			err := v.Err()
			var ps connector.Problems
			if err != nil {
				ps = err.(connector.Problems)
			}
			if len(ps) != len(tc.want) {
				t.Fatalf("problems:\n%v\nwant %d", err, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(ps[i].String(), w) {
					t.Errorf("problem %d = %q, want prefix %q", i, ps[i], w)
				}
			}
			if tc.want == nil && (c.BaseURL != DefaultBaseURL || c.BatchSize != 100 || c.TokenFile != "/etc/contactsync/t" || c.MaxWait != DefaultMaxWait) {
				t.Errorf("defaults not applied: %+v", c)
			}
		})
	}
}

// TestCloseReleasesConnections: the sink's own HTTP client keeps idle
// connections; Close closes them, which the server sees.
func TestCloseReleasesConnections(t *testing.T) {
	sim := simulator.New(simulator.Options{OrgID: testOrg, Token: testToken})
	closed := make(chan struct{}, 16)
	srv := httptest.NewUnstartedServer(sim)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "webex.token"), testToken)
	cfg := &Config{BaseURL: srv.URL + "/v1", OrgID: testOrg, TokenFile: "webex.token"}
	v := connector.NewValidator(dir)
	cfg.Validate(v)
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	s, err := newSink(cfg, connector.Env{Job: "j"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-closed // blocks (until the test times out) if the connection stays open
}
