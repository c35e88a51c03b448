package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/contactsync/contactsync/config"
	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sinks/webexapi/simulator"
	"github.com/contactsync/contactsync/sources/ldap/ldaptest"
	"github.com/contactsync/contactsync/state"
)

const (
	secClientID     = "contactsync-integration"
	secClientSecret = "cl13nt-S3cret-Vq7uZ"
	secRefresh      = "r3fresh-T0ken-Hb4pW"
	secHookPath     = "h00k-Path-S3cret-Jd2"
	secWrongLDAP    = "Wr0ng-LDAP-Pa55-Xe1"
	secWrongClient  = "Wr0ng-Cl1ent-S3cret-Ty8"
	secBadToken     = "Bad-St4tic-T0ken-Mn3"
)

const secretsConfig = `state: state.db
log: {format: %FORMAT%, level: debug}
listen: ""
notify:
  webhook: {url_file: webhook.url}
  every_run: true
jobs:
  - name: dir
    schedule: "@every 1s"
    source:
      ldap:
        url: %LDAP%
        bind_dn: "cn=reader,ou=service,dc=example,dc=org"
        bind_password_file: ldap.password
        base_dn: "ou=suppliers,dc=example,dc=org"
        filter: "(objectClass=inetOrgPerson)"
        incremental: "off"
    mapping:
      display_name: "{{.cn}}"
      phones: [{value: "{{.telephoneNumber}}", type: work}]
      phone_region: FR
    sink:
      csv: {dir: outbox}
  - name: crm
    schedule: "@every 1s"
    source:
      csv: {dir: drop, key: id}
    mapping:
      display_name: "{{.name}}"
      phones: [{value: "{{.phone}}", type: work}]
      phone_region: FR
    sink:
      webex: {base_url: %WEBEX%, org_id: ` + wxOrg + `, %AUTH%, requests_per_second: 1000, max_wait: 2s}
`

// secretsEnv is an installation whose every secret is known: the LDAP
// bind password, the OAuth client secret and refresh token (and the ones
// the simulator issues in exchange), and the webhook URL.
type secretsEnv struct {
	*env
	slapd   *ldaptest.Slapd
	sim     *simulator.Server
	format  string
	ldapURL string
	wxURL   string
	hookURL string

	mu    sync.Mutex
	hooks []string // bodies the webhook received
	said  bytes.Buffer
}

func newSecretsEnv(t *testing.T, format string) *secretsEnv {
	s := &secretsEnv{env: newEnv(t, "10"), format: format}
	s.slapd = ldaptest.StartSlapd(t, ldaptest.SlapdOptions{ExtraLDIF: supplierLDIF(30)})
	s.ldapURL = s.slapd.URL
	s.sim = simulator.New(simulator.Options{OrgID: wxOrg, ClientID: secClientID, ClientSecret: secClientSecret, RefreshToken: secRefresh})
	wx := httptest.NewServer(s.sim)
	t.Cleanup(wx.Close)
	s.wxURL = wx.URL + "/v1"
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.hooks = append(s.hooks, string(b))
		s.mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	s.hookURL = hook.URL + "/hooks/" + secHookPath
	s.secret("ldap.password", s.slapd.ReaderPass)
	s.secret("client.secret", secClientSecret)
	s.secret("webex.refresh", secRefresh)
	s.secret("webhook.url", s.hookURL)
	s.configure("oauth: {client_id: " + secClientID + ", client_secret_file: client.secret, refresh_token_file: webex.refresh}")
	s.writeDrop("id,name,phone\n1,Supplier 1,+33 1 23 45 00 01\n2,Supplier 2,+33 1 23 45 00 02\n")
	return s
}

func (s *secretsEnv) secret(name, value string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(value+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *secretsEnv) configure(auth string) {
	s.t.Helper()
	cfg := strings.NewReplacer("%FORMAT%", s.format, "%LDAP%", s.ldapURL, "%WEBEX%", s.wxURL, "%AUTH%", auth).Replace(secretsConfig)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// say runs a command and keeps everything it printed.
func (s *secretsEnv) say(ctx context.Context, args ...string) int {
	s.t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{args[0], "-c", s.config}, args[1:]...)
	code := Main(ctx, IO{Args: full, Stdout: &out, Stderr: &errb})
	fmt.Fprintf(&s.said, "$ contactsync %s (exit %d)\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code
}

// secrets are every secret value the installation held.
func (s *secretsEnv) secrets() []string {
	list := []string{s.slapd.ReaderPass, secClientSecret, secRefresh, secHookPath, s.hookURL, secWrongLDAP, secWrongClient, secBadToken}
	if r := s.sim.RefreshToken(); r != "" {
		list = append(list, r) // issued by the simulator, persisted by the sink
	}
	return list
}

// leaks returns where a secret appears: in what the commands printed, in
// what the webhook received, or in any file of the installation that is
// not a secret file (the state file and its WAL byte for byte, outputs).
func (s *secretsEnv) leaks() []string {
	var found []string
	s.mu.Lock()
	said := s.said.String() + strings.Join(s.hooks, "\n")
	s.mu.Unlock()
	secretFiles := map[string]bool{"ldap.password": true, "client.secret": true, "webex.refresh": true, "webhook.url": true, "webex.token": true}
	for _, sec := range s.secrets() {
		if strings.Contains(said, sec) {
			found = append(found, fmt.Sprintf("output shows %q", sec))
		}
	}
	_ = filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || secretFiles[d.Name()] {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, sec := range s.secrets() {
			if bytes.Contains(data, []byte(sec)) {
				found = append(found, fmt.Sprintf("%s holds %q", strings.TrimPrefix(p, s.dir+"/"), sec))
			}
		}
		return nil
	})
	return found
}

func TestSecretsNeverShow(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			s := newSecretsEnv(t, format)
			ctx := context.Background()
			for _, args := range [][]string{
				{"version"}, {"check"}, {"preview", "--job", "dir", "--limit", "3"}, {"preview", "--job", "crm"},
				{"plan"}, {"plan", "--json"}, {"sync"}, {"sync", "--json", "--full"},
				{"history"}, {"history", "--json"}, {"show", "1"}, {"show", "1", "--json"},
				{"approve", "--job", "dir"},
			} {
				if code := s.say(ctx, args...); code != ExitOK {
					t.Errorf("contactsync %s: exit %d\n%s", strings.Join(args, " "), code, s.said.String())
				}
			}
			// reconcile with an export that carries the dir job's contacts.
			imports, _ := filepath.Glob(filepath.Join(s.outbox, "dir-run*-import-001.csv"))
			if len(imports) != 1 {
				t.Fatalf("import files of job dir: %v", imports)
			}
			runID := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(imports[0]), "dir-run"), "-import-001.csv")
			s.reconcileAll("dir", runID)
			export := filepath.Join(s.dir, "export-"+runID+".csv")
			if code := s.say(ctx, "reconcile", "--job", "dir", export); code != ExitOK {
				t.Errorf("reconcile: exit %d", code)
			}
			// The daemon, long enough to run both jobs once.
			dctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
			s.say(dctx, "run")
			cancel()

			// Failures: a wrong bind password, a wrong client secret, a
			// static token the API refuses (401), an unreachable webhook.
			s.secret("ldap.password", secWrongLDAP)
			s.secret("client.secret", secWrongClient)
			s.secret("webex.refresh", s.sim.RefreshToken()+"-stale")
			for _, args := range [][]string{{"check"}, {"sync", "--full"}, {"preview", "--job", "dir"}, {"plan"}} {
				if code := s.say(ctx, args...); code == ExitOK {
					t.Errorf("contactsync %s succeeded with wrong secrets", strings.Join(args, " "))
				}
			}
			s.say(ctx, "preview", "--job", "crm") // shows stored contacts: needs no token
			s.secret("webex.token", secBadToken)
			s.secret("webhook.url", "http://127.0.0.1:1/hooks/"+secHookPath)
			s.configure("token_file: webex.token")
			for _, args := range [][]string{{"check"}, {"sync", "--job", "crm", "--full"}, {"history", "--json"}} {
				s.say(ctx, args...)
			}
			s.mu.Lock()
			hooks := len(s.hooks)
			s.mu.Unlock()
			if hooks == 0 {
				t.Error("the webhook received nothing: notifications were not exercised")
			}
			for _, want := range []string{"invalid credentials", "401"} {
				if !strings.Contains(s.said.String(), want) {
					t.Errorf("no command said %q", want)
				}
			}
			for _, l := range s.leaks() {
				t.Error(l)
			}
			if t.Failed() {
				t.Logf("what the commands printed:\n%s", s.said.String())
			}
			checkModes(t, s.env)
		})
	}
}

// checkModes checks that the state is readable by its owner only and the
// outputs by its group at most.
func checkModes(t *testing.T, e *env) {
	t.Helper()
	for _, name := range []string{"state.db", "state.db-wal"} {
		if fi, err := os.Stat(filepath.Join(e.dir, name)); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	ents, _ := os.ReadDir(e.outbox)
	if len(ents) == 0 {
		t.Error("no output file to check")
	}
	for _, d := range ents {
		fi, err := d.Info()
		if err == nil && fi.Mode().Perm()&^0o640 != 0 {
			t.Errorf("%s mode %v, want 0640 at most", d.Name(), fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(filepath.Join(e.dir, "webex.refresh")); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("webex.refresh mode %v after the sink rewrote it, want 0600", fi.Mode().Perm())
	}
}

// TestSecretsRendering renders the configuration and the opened jobs
// (after they read their secrets and got tokens) every way a developer
// might print them.
func TestSecretsRendering(t *testing.T) {
	s := newSecretsEnv(t, "json")
	if code := s.say(context.Background(), "sync"); code != ExitOK {
		t.Fatalf("sync: exit %d\n%s", code, s.said.String())
	}
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := state.Open(ctx, filepath.Join(s.dir, "state.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	jobs, err := cfg.Build(nil, slog.New(slog.DiscardHandler), db)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	render := func(v any) {
		fmt.Fprintf(&b, "%v\n%+v\n%#v\n%s\n", v, v, v, v)
		if j, err := json.Marshal(v); err == nil {
			b.Write(j)
		}
		if y, err := yaml.Marshal(v); err == nil {
			b.Write(y)
		}
		slog.New(slog.NewJSONHandler(&b, nil)).Info("value", "v", v)
		slog.New(slog.NewTextHandler(&b, nil)).Info("value", "v", v)
	}
	render(cfg)
	for _, j := range jobs {
		for _, part := range []any{j.Source, j.Sink} {
			if c, ok := part.(connector.Checker); ok {
				_, _ = c.Check(ctx) // binds, gets an access token: secrets now in memory
			}
			render(part)
		}
		render(j)
	}
	closeJobs(jobs)
	for _, sec := range s.secrets() {
		if strings.Contains(b.String(), sec) {
			t.Errorf("a rendering shows %q", sec)
		}
	}
	render(connector.Secret("plain-Secret-Value"))
	if strings.Contains(b.String(), "plain-Secret-Value") || !strings.Contains(b.String(), "<secret>") {
		t.Errorf("connector.Secret renders its value or not <secret>")
	}
}
