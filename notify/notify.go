// Package notify tells an administrator about the runs that need them: a
// JSON POST to a webhook and/or a message in a Webex space through a bot,
// on failed and blocked runs, and on every run when asked. The webhook URL
// and the bot token are secrets read from files; they never appear in logs
// or errors.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// DefaultWebexBaseURL is where bot messages go when webex.base_url is unset.
const DefaultWebexBaseURL = "https://webexapis.com/v1"

// Config is the `notify:` block.
//
//	notify:
//	  every_run: false                    # true: also report successful runs
//	  webhook:
//	    url_file: /etc/contactsync/webhook.url   # the URL may embed a token: a secret
//	  webex:                              # a message in a Webex space, from a bot
//	    token_file: /etc/contactsync/webex-bot.token
//	    room_id: Y2lzY29zcGFyazovL3VzL1JPT00v...
//	    base_url: https://webexapis.com/v1
type Config struct {
	Webhook  *WebhookConfig `yaml:"webhook"`
	Webex    *WebexConfig   `yaml:"webex"`
	EveryRun bool           `yaml:"every_run"`
}

// WebhookConfig sends a JSON POST (see Message) to a URL read from a file.
type WebhookConfig struct {
	URLFile string `yaml:"url_file"`
}

// WebexConfig posts a markdown message to a Webex space as a bot.
type WebexConfig struct {
	TokenFile string `yaml:"token_file"`
	RoomID    string `yaml:"room_id"`
	BaseURL   string `yaml:"base_url"`
}

// Validate reports every problem under v (the `notify` path) and resolves
// relative file names. Secret files are read by New, not here.
func (c *Config) Validate(v *connector.Validator) {
	if c == nil {
		return
	}
	if c.Webhook == nil && c.Webex == nil {
		v.Errorf("", "set webhook or webex, or remove notify")
	}
	if c.Webhook != nil {
		w := v.At("webhook")
		w.Required("url_file", c.Webhook.URLFile)
		w.ResolvePath(&c.Webhook.URLFile)
	}
	if c.Webex != nil {
		x := v.At("webex")
		x.Required("token_file", c.Webex.TokenFile)
		x.Required("room_id", c.Webex.RoomID)
		x.ResolvePath(&c.Webex.TokenFile)
		if c.Webex.BaseURL != "" {
			if u, err := url.Parse(c.Webex.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				x.Errorf("base_url", "must be an http(s) URL such as %s", DefaultWebexBaseURL)
			}
		}
	}
}

// Notifier sends notifications. A nil *Notifier sends nothing, so callers
// need not check whether notify: is configured.
type Notifier struct {
	webhook  connector.Secret
	token    connector.Secret
	roomID   string
	webexURL string
	everyRun bool
	host     string
	log      *slog.Logger
	client   *http.Client
	attempts int
	// sleep waits between attempts; tests record the waits instead.
	sleep func(ctx context.Context, d time.Duration) error
}

// New reads the secrets of c and returns a Notifier; nil c gives a nil
// Notifier. Errors name the files, never their content.
func New(c *Config, logger *slog.Logger) (*Notifier, error) {
	if c == nil {
		return nil, nil
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{
		everyRun: c.EveryRun,
		log:      logger,
		client:   &http.Client{Timeout: 15 * time.Second},
		attempts: 4,
		sleep:    sleepCtx,
	}
	n.host, _ = os.Hostname()
	if c.Webhook != nil {
		s, err := connector.ReadSecretFile(c.Webhook.URLFile)
		if err != nil {
			return nil, fmt.Errorf("notify: webhook.url_file: %w", err)
		}
		// The parse error would quote the URL: report the file instead.
		if u, err := url.Parse(strings.TrimSpace(s.Reveal())); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("notify: webhook.url_file: %s does not hold an http(s) URL", c.Webhook.URLFile)
		}
		n.webhook = connector.Secret(strings.TrimSpace(s.Reveal()))
	}
	if c.Webex != nil {
		s, err := connector.ReadSecretFile(c.Webex.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("notify: webex.token_file: %w", err)
		}
		n.token = connector.Secret(strings.TrimSpace(s.Reveal()))
		n.roomID = c.Webex.RoomID
		base := c.Webex.BaseURL
		if base == "" {
			base = DefaultWebexBaseURL
		}
		n.webexURL = strings.TrimRight(base, "/") + "/messages"
	}
	return n, nil
}

// Wants reports whether run is worth a notification: it failed or was
// blocked, or every_run is set.
func (n *Notifier) Wants(run connector.Run) bool {
	if n == nil {
		return false
	}
	return n.everyRun || run.Status == connector.StatusFailed || run.Status == connector.StatusBlocked
}

// Message is the JSON body POSTed to the webhook: the run as `history
// --json` shows it, plus a one-line summary in `text` that chat webhooks
// (Slack, Mattermost, Webex incoming webhooks) display as is.
type Message struct {
	Text string `json:"text"`
	Host string `json:"host,omitempty"`
	connector.Run
}

// Notify sends run to every configured target when Wants(run). Each target
// is retried with backoff on network errors, 429 and 5xx, a bounded number
// of times; the error joins what every target that gave up said.
func (n *Notifier) Notify(ctx context.Context, run connector.Run) error {
	if !n.Wants(run) {
		return nil
	}
	var errs []error
	if n.webhook != "" {
		body, err := json.Marshal(Message{Text: summary(run, n.host), Host: n.host, Run: run})
		if err != nil {
			return fmt.Errorf("notify: webhook: encode: %w", err)
		}
		if err := n.post(ctx, "webhook", n.webhook.Reveal(), "", body); err != nil {
			errs = append(errs, err)
		} else {
			n.log.Debug("notification sent", "target", "webhook", "job", run.Job, "run", run.ID)
		}
	}
	if n.token != "" {
		body, err := json.Marshal(struct {
			RoomID   string `json:"roomId"`
			Markdown string `json:"markdown"`
		}{n.roomID, markdown(run, n.host)})
		if err != nil {
			return fmt.Errorf("notify: webex: encode: %w", err)
		}
		if err := n.post(ctx, "webex", n.webexURL, n.token, body); err != nil {
			errs = append(errs, err)
		} else {
			n.log.Debug("notification sent", "target", "webex", "job", run.Job, "run", run.ID)
		}
	}
	return errors.Join(errs...)
}

const (
	firstBackoff  = time.Second
	maxBackoff    = 30 * time.Second
	maxRetryAfter = 60 * time.Second
)

// post sends body to target until it is accepted, a permanent error comes
// back, or the attempts are used up.
func (n *Notifier) post(ctx context.Context, name, target string, token connector.Secret, body []byte) error {
	backoff := firstBackoff
	var last error
	attempt := 1
	for ; ; attempt++ {
		wait, retry, err := n.try(ctx, target, token, body)
		if err == nil {
			return nil
		}
		last = err
		if !retry || attempt >= n.attempts {
			break
		}
		if wait <= 0 {
			wait = backoff
			backoff = min(2*backoff, maxBackoff)
		}
		n.log.Warn("notification not delivered, retrying", "target", name, "attempt", attempt, "wait", wait, "err", last)
		if err := n.sleep(ctx, wait); err != nil {
			break
		}
	}
	return fmt.Errorf("notify: %s: gave up after %d attempt(s): %w", name, attempt, last)
}

// try makes one attempt. retry says whether another could succeed; wait is
// what the server asked for in Retry-After (0: none).
func (n *Notifier) try(ctx context.Context, target string, token connector.Secret, body []byte) (wait time.Duration, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, false, errors.New("cannot build the request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "contactsync")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token.Reveal())
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, ctx.Err() == nil, n.scrub(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return 0, false, nil
	}
	err = fmt.Errorf("HTTP %s", resp.Status)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout,
		resp.StatusCode == http.StatusLocked, resp.StatusCode >= 500:
		return retryAfter(resp.Header.Get("Retry-After")), true, err
	}
	return 0, false, err
}

// scrub turns a transport error into one that cannot carry the URL (which
// may hold a token) nor the token.
func (n *Notifier) scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	for _, s := range []connector.Secret{n.webhook, n.token} {
		if s != "" {
			msg = strings.ReplaceAll(msg, s.Reveal(), "<secret>")
		}
	}
	if u, perr := url.Parse(n.webhook.Reveal()); perr == nil && n.webhook != "" {
		for _, part := range []string{u.RawQuery, u.Path, u.User.String()} {
			if len(part) > 1 {
				msg = strings.ReplaceAll(msg, part, "<secret>")
			}
		}
	}
	return errors.New(msg)
}

func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	var secs int
	if _, err := fmt.Sscanf(h, "%d", &secs); err == nil && secs > 0 {
		return min(time.Duration(secs)*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := time.Until(t); d > 0 {
			return min(d, maxRetryAfter)
		}
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
