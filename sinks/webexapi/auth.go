package webexapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// ErrTokenRejected is returned when the API answers 401 to a token that
// cannot be renewed (a static token_file), or to a freshly renewed one.
var ErrTokenRejected = errors.New("webex: token rejected (401)")

// authenticator hands out the bearer token for a call.
type authenticator interface {
	// token returns the token to send now, renewing it first if it expires
	// soon.
	token(ctx context.Context) (connector.Secret, error)
	// rejected is told that the API answered 401 to used; it returns nil
	// when a new token is worth one more try.
	rejected(ctx context.Context, used connector.Secret) error
}

type staticToken struct{ tok connector.Secret }

func (s staticToken) token(context.Context) (connector.Secret, error)  { return s.tok, nil }
func (s staticToken) rejected(context.Context, connector.Secret) error { return ErrTokenRejected }

// refreshSkew renews an access token this long before it expires, so that a
// batch never starts with a token about to lapse.
const refreshSkew = 5 * time.Minute

// oauth renews access tokens with a refresh token and persists the newest
// refresh token, since Webex may rotate it and the old one then stops
// working.
type oauth struct {
	endpoint     string // .../access_token
	clientID     string
	clientSecret connector.Secret
	refreshFile  string
	httpc        *http.Client
	now          func() time.Time
	log          interface{ Info(string, ...any) }

	mu      sync.Mutex
	refresh connector.Secret
	access  connector.Secret
	expires time.Time
}

func (o *oauth) token(ctx context.Context) (connector.Secret, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.access != "" && o.now().Add(refreshSkew).Before(o.expires) {
		return o.access, nil
	}
	if err := o.renewLocked(ctx); err != nil {
		return "", err
	}
	return o.access, nil
}

func (o *oauth) rejected(ctx context.Context, used connector.Secret) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.access != used {
		// Another call renewed it meanwhile: just retry with the new one.
		return nil
	}
	return o.renewLocked(ctx)
}

type tokenAnswer struct {
	AccessToken           string `json:"access_token"`
	ExpiresIn             int64  `json:"expires_in"`
	RefreshToken          string `json:"refresh_token"`
	RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in"`
}

// renewLocked exchanges the refresh token for an access token. Neither the
// request nor the answer body is ever put in an error: both carry secrets.
func (o *oauth) renewLocked(ctx context.Context) error {
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"client_id":     {o.clientID},
		"client_secret": {o.clientSecret.Reveal()},
		"refresh_token": {o.refresh.Reveal()},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("webex: oauth refresh: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := o.httpc.Do(req)
	if err != nil {
		return fmt.Errorf("webex: oauth refresh at %s: %w", o.endpoint, redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("webex: oauth refresh at %s: read answer: %w", o.endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("webex: oauth refresh at %s rejected (%d): check client_id, client_secret_file and refresh_token_file", o.endpoint, resp.StatusCode)
	}
	var a tokenAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.AccessToken == "" {
		return fmt.Errorf("webex: oauth refresh at %s: answer has no access_token", o.endpoint)
	}
	o.access = connector.Secret(a.AccessToken)
	o.expires = o.now().Add(time.Duration(a.ExpiresIn) * time.Second)
	if a.RefreshToken != "" && a.RefreshToken != o.refresh.Reveal() {
		if err := writeSecretAtomic(o.refreshFile, a.RefreshToken); err != nil {
			// The new refresh token may have replaced the old one at Webex:
			// carrying on would lose it at the next start.
			return fmt.Errorf("webex: oauth: persist the new refresh token: %w", err)
		}
		o.refresh = connector.Secret(a.RefreshToken)
		o.log.Info("webex: oauth refresh token renewed", "file", o.refreshFile)
	}
	return nil
}

// writeSecretAtomic replaces path with value: a temporary file in the same
// folder, mode 0600, synced, then renamed, so a crash leaves either the old
// or the new token, never a torn one.
func writeSecretAtomic(path, value string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.WriteString(value + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename to %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// redactURLError keeps the operation and cause of a transport error but
// drops its URL, whose query could in principle carry a secret.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
