package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func failedRun() connector.Run {
	return connector.Run{
		ID: 42, Job: "suppliers", Kind: "sync", Trigger: "schedule",
		StartedAt:  time.Date(2025, 3, 1, 2, 0, 0, 0, time.UTC),
		FinishedAt: time.Date(2025, 3, 1, 2, 0, 7, 0, time.UTC),
		Status:     connector.StatusFailed,
		Counts:     connector.Counts{Created: 3, Updated: 1, Rejected: 2, Source: 120, Unchanged: 114},
		Reason:     "ldap: bind cn=svc,dc=corp: Invalid Credentials",
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// recorder is a webhook/Webex endpoint that answers with the statuses it is
// given, in order, and keeps what it received.
type recorder struct {
	mu       sync.Mutex
	statuses []int
	header   http.Header // of every answer
	bodies   [][]byte
	auth     []string
	paths    []string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.bodies = append(rec.bodies, b)
	rec.auth = append(rec.auth, r.Header.Get("Authorization"))
	rec.paths = append(rec.paths, r.URL.RequestURI())
	status := http.StatusOK
	if i := len(rec.bodies) - 1; i < len(rec.statuses) {
		status = rec.statuses[i]
	} else if len(rec.statuses) > 0 {
		status = rec.statuses[len(rec.statuses)-1]
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
}

// newNotifier builds a Notifier through New from files, with its waits
// recorded instead of slept.
func newNotifier(t *testing.T, c *Config, logs io.Writer) (*Notifier, *[]time.Duration) {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	n, err := New(c, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	n.host = "sync01"
	waits := new([]time.Duration)
	n.sleep = func(ctx context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		return ctx.Err()
	}
	return n, waits
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int
		header    http.Header
		wantCalls int
		wantWaits []time.Duration
		wantErr   string
	}{
		{name: "500 then 200", statuses: []int{500, 200}, wantCalls: 2, wantWaits: []time.Duration{time.Second}},
		{name: "first try", statuses: []int{204}, wantCalls: 1},
		{name: "429 honours Retry-After", statuses: []int{429, 200}, header: http.Header{"Retry-After": {"7"}},
			wantCalls: 2, wantWaits: []time.Duration{7 * time.Second}},
		{name: "Retry-After is capped", statuses: []int{503, 200}, header: http.Header{"Retry-After": {"86400"}},
			wantCalls: 2, wantWaits: []time.Duration{maxRetryAfter}},
		{name: "gives up after 4 attempts", statuses: []int{502}, wantCalls: 4,
			wantWaits: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second},
			wantErr:   "notify: webhook: gave up after 4 attempt(s): HTTP 502 Bad Gateway"},
		{name: "4xx is not retried", statuses: []int{404}, wantCalls: 1,
			wantErr: "notify: webhook: gave up after 1 attempt(s): HTTP 404 Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{statuses: tt.statuses, header: tt.header}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			dir := t.TempDir()
			c := &Config{Webhook: &WebhookConfig{URLFile: writeFile(t, dir, "webhook.url", srv.URL+"/hook\n")}}
			n, waits := newNotifier(t, c, nil)
			err := n.Notify(context.Background(), failedRun())
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Notify: %v", err)
			}
			if tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("Notify error = %v, want %q", err, tt.wantErr)
			}
			if len(rec.bodies) != tt.wantCalls {
				t.Errorf("calls = %d, want %d", len(rec.bodies), tt.wantCalls)
			}
			if !equalDurations(*waits, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", *waits, tt.wantWaits)
			}
			for _, b := range rec.bodies {
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatalf("body is not JSON: %v", err)
				}
				if m["job"] != "suppliers" || m["status"] != "failed" || m["created"] != 3.0 || m["reason"] == nil {
					t.Errorf("body lacks the run's figures: %s", b)
				}
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestMessages compares what each target receives with golden files.
func TestMessages(t *testing.T) {
	blocked := failedRun()
	blocked.Status = connector.StatusBlocked
	blocked.Reason = "safety: 600 deletes > max_deletes 500"
	ok := failedRun()
	ok.Status = connector.StatusOK
	ok.Reason = ""
	tests := []struct {
		name string
		run  connector.Run
	}{
		{"failed", failedRun()},
		{"blocked", blocked},
		{"ok", ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook, webex := &recorder{}, &recorder{}
			hookSrv, webexSrv := httptest.NewServer(hook), httptest.NewServer(webex)
			defer hookSrv.Close()
			defer webexSrv.Close()
			dir := t.TempDir()
			c := &Config{
				EveryRun: true,
				Webhook:  &WebhookConfig{URLFile: writeFile(t, dir, "webhook.url", hookSrv.URL+"/hook")},
				Webex: &WebexConfig{TokenFile: writeFile(t, dir, "bot.token", "bot-token-value\n"),
					RoomID: "room-1", BaseURL: webexSrv.URL + "/v1/"},
			}
			n, _ := newNotifier(t, c, nil)
			if err := n.Notify(context.Background(), tt.run); err != nil {
				t.Fatal(err)
			}
			if len(hook.bodies) != 1 || len(webex.bodies) != 1 {
				t.Fatalf("webhook got %d posts, webex %d; want 1 each", len(hook.bodies), len(webex.bodies))
			}
			if webex.paths[0] != "/v1/messages" || webex.auth[0] != "Bearer bot-token-value" {
				t.Errorf("webex got %s with auth %q", webex.paths[0], webex.auth[0])
			}
			if hook.auth[0] != "" {
				t.Errorf("webhook got an Authorization header")
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, hook.bodies[0], "", "  "); err != nil {
				t.Fatal(err)
			}
			golden(t, "webhook-"+tt.name+".json", pretty.Bytes())
			var msg struct{ RoomID, Markdown string }
			if err := json.Unmarshal(webex.bodies[0], &msg); err != nil || msg.RoomID != "room-1" {
				t.Fatalf("webex body %s: %v", webex.bodies[0], err)
			}
			golden(t, "webex-"+tt.name+".md", []byte(msg.Markdown))
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

func TestWants(t *testing.T) {
	tests := []struct {
		status   string
		everyRun bool
		want     bool
	}{
		{connector.StatusFailed, false, true},
		{connector.StatusBlocked, false, true},
		{connector.StatusOK, false, false},
		{connector.StatusOK, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			n := &Notifier{everyRun: tt.everyRun}
			if got := n.Wants(connector.Run{Status: tt.status}); got != tt.want {
				t.Errorf("Wants = %v, want %v", got, tt.want)
			}
		})
	}
	var nilN *Notifier
	if nilN.Wants(failedRun()) || nilN.Notify(context.Background(), failedRun()) != nil {
		t.Error("a nil Notifier must do nothing")
	}
}

// TestSecretsStayOut sends to a failing webhook whose URL carries a token,
// and to a closed port, and checks that neither the URL's secret parts nor
// the bot token reach the logs or the error.
func TestSecretsStayOut(t *testing.T) {
	const hookToken, botToken = "hooktoken-s3cr3t", "bottoken-s3cr3t"
	failing := httptest.NewServer(&recorder{statuses: []int{500}})
	defer failing.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name, hook, webex string
	}{
		{"server errors", failing.URL + "/hooks/" + hookToken + "?key=" + hookToken, failing.URL},
		{"connection refused", closed + "/hooks/" + hookToken + "?key=" + hookToken, closed},
		{"token in user info", "http://user:" + hookToken + "@" + ln.Addr().String() + "/x", closed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := &Config{
				Webhook: &WebhookConfig{URLFile: writeFile(t, dir, "webhook.url", tt.hook)},
				Webex:   &WebexConfig{TokenFile: writeFile(t, dir, "bot.token", botToken), RoomID: "r", BaseURL: tt.webex},
			}
			var logs bytes.Buffer
			n, _ := newNotifier(t, c, &logs)
			err := n.Notify(context.Background(), failedRun())
			if err == nil {
				t.Fatal("Notify succeeded against a failing endpoint")
			}
			out := logs.String() + "\n" + err.Error()
			for _, s := range []string{hookToken, botToken} {
				if strings.Contains(out, s) {
					t.Errorf("secret %q leaked:\n%s", s, out)
				}
			}
			if !strings.Contains(logs.String(), "retrying") {
				t.Errorf("retries were not logged:\n%s", logs.String())
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	notURL := writeFile(t, dir, "bad.url", "not a url s3cr3t")
	empty := writeFile(t, dir, "empty.token", "\n")
	tests := []struct {
		name    string
		c       *Config
		wantErr string
	}{
		{"missing file", &Config{Webhook: &WebhookConfig{URLFile: filepath.Join(dir, "nope.url")}}, "nope.url"},
		{"not a URL", &Config{Webhook: &WebhookConfig{URLFile: notURL}}, "bad.url does not hold an http(s) URL"},
		{"empty token", &Config{Webex: &WebexConfig{TokenFile: empty, RoomID: "r"}}, "empty.token: file is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.c, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks the file's content: %v", err)
			}
		})
	}
	if n, err := New(nil, nil); n != nil || err != nil {
		t.Errorf("New(nil) = %v, %v; want nil, nil", n, err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		c    *Config
		want string
	}{
		{"nil", nil, ""},
		{"webhook", &Config{Webhook: &WebhookConfig{URLFile: "webhook.url"}}, ""},
		{"no target", &Config{EveryRun: true}, "notify: set webhook or webex, or remove notify"},
		{"webhook without file", &Config{Webhook: &WebhookConfig{}}, "notify.webhook.url_file: must be set"},
		{"webex incomplete", &Config{Webex: &WebexConfig{BaseURL: "ftp://x"}},
			"notify.webex.token_file: must be set\nnotify.webex.room_id: must be set\nnotify.webex.base_url: must be an http(s) URL such as https://webexapis.com/v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := connector.NewValidator("/etc/contactsync")
			tt.c.Validate(v.At("notify"))
			got := ""
			if err := v.Err(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
	c := &Config{Webhook: &WebhookConfig{URLFile: "webhook.url"}}
	c.Validate(connector.NewValidator("/etc/contactsync"))
	if c.Webhook.URLFile != "/etc/contactsync/webhook.url" {
		t.Errorf("relative url_file resolved to %q", c.Webhook.URLFile)
	}
}
