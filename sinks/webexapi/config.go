// Package webexapi is the Webex organization-contacts API sink (sink.webex):
// it creates and updates contacts through the bulk endpoint, deletes them
// through bulk delete, binds the UUIDs the API assigns, finds existing
// contacts for adoption through search, and makes creates exactly-once
// across crashes with the run's journal.
package webexapi

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// Config configures the Webex API sink.
//
//	sink:
//	  webex:
//	    base_url: https://webexapis.com/v1   # default
//	    org_id: 0ae87ade-6c7a-4b6f-9d49-1b0e8a8f1c2d   # or a Y2... id
//	    token_file: /etc/contactsync/webex.token       # a static admin token, or:
//	    # oauth:
//	    #   client_id: C0123...
//	    #   client_secret_file: /etc/contactsync/webex-client.secret
//	    #   refresh_token_file: /var/lib/contactsync/webex.refresh   # rewritten on refresh
//	    batch_size: 100             # contacts per bulk call
//	    requests_per_second: 5      # at most this many calls per second
//	    concurrency: 4              # calls in flight
//	    timeout: 30s                # per call
//	    max_wait: 10m               # total time a run may spend waiting to retry
type Config struct {
	BaseURL           string        `yaml:"base_url"`
	OrgID             string        `yaml:"org_id"`
	TokenFile         string        `yaml:"token_file"`
	OAuth             *OAuthConfig  `yaml:"oauth"`
	BatchSize         int           `yaml:"batch_size"`
	RequestsPerSecond float64       `yaml:"requests_per_second"`
	Concurrency       int           `yaml:"concurrency"`
	Timeout           time.Duration `yaml:"timeout"`
	MaxWait           time.Duration `yaml:"max_wait"`
}

// OAuthConfig is an integration's credentials; the access token is obtained
// and renewed with the refresh token, whose newest value is written back to
// RefreshTokenFile.
type OAuthConfig struct {
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	RefreshTokenFile string `yaml:"refresh_token_file"`
}

// Defaults.
const (
	DefaultBaseURL           = "https://webexapis.com/v1"
	DefaultBatchSize         = 100
	DefaultRequestsPerSecond = 5
	DefaultConcurrency       = 4
	DefaultTimeout           = 30 * time.Second
	DefaultMaxWait           = 10 * time.Minute
	// maxBatch bounds batch_size; the API's own limit is unconfirmed.
	maxBatch = 1000
)

var _ connector.SinkConfig = (*Config)(nil)

// Validate reports every problem under v, resolves relative file names and
// fills in defaults.
func (c *Config) Validate(v *connector.Validator) {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.Errorf("base_url", "must be an http(s) URL, got %q", c.BaseURL)
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.OrgID == "" {
		v.Errorf("org_id", "must be set")
	} else if _, err := OrgUUID(c.OrgID); err != nil {
		v.Errorf("org_id", "%v", err)
	}
	switch {
	case c.TokenFile != "" && c.OAuth != nil:
		v.Errorf("", "set token_file or oauth, not both")
	case c.TokenFile == "" && c.OAuth == nil:
		v.Errorf("", "one of token_file or oauth must be set")
	case c.TokenFile != "":
		v.ResolvePath(&c.TokenFile)
	default:
		o := v.At("oauth")
		o.Required("client_id", c.OAuth.ClientID)
		o.Required("client_secret_file", c.OAuth.ClientSecretFile)
		o.Required("refresh_token_file", c.OAuth.RefreshTokenFile)
		o.ResolvePath(&c.OAuth.ClientSecretFile)
		o.ResolvePath(&c.OAuth.RefreshTokenFile)
	}
	switch {
	case c.BatchSize == 0:
		c.BatchSize = DefaultBatchSize
	case c.BatchSize < 0 || c.BatchSize > maxBatch:
		v.Errorf("batch_size", "must be between 1 and %d, got %d", maxBatch, c.BatchSize)
	}
	switch {
	case c.RequestsPerSecond == 0:
		c.RequestsPerSecond = DefaultRequestsPerSecond
	case c.RequestsPerSecond < 0:
		v.Errorf("requests_per_second", "must be positive, got %v", c.RequestsPerSecond)
	}
	switch {
	case c.Concurrency == 0:
		c.Concurrency = DefaultConcurrency
	case c.Concurrency < 0 || c.Concurrency > 64:
		v.Errorf("concurrency", "must be between 1 and 64, got %d", c.Concurrency)
	}
	switch {
	case c.Timeout == 0:
		c.Timeout = DefaultTimeout
	case c.Timeout < 0:
		v.Errorf("timeout", "must be positive, got %s", c.Timeout)
	}
	switch {
	case c.MaxWait == 0:
		c.MaxWait = DefaultMaxWait
	case c.MaxWait < 0:
		v.Errorf("max_wait", "must be positive, got %s", c.MaxWait)
	}
}

// OrgUUID returns the organization UUID of id: id itself when it is a UUID,
// or the last path element of a base64 "Y2..." id
// (ciscospark://us/ORGANIZATION/<uuid>).
func OrgUUID(id string) (string, error) {
	id = strings.TrimSpace(id)
	if isUUID(id) {
		return strings.ToLower(id), nil
	}
	if !strings.HasPrefix(id, "Y2") {
		return "", fmt.Errorf("%q is neither an organization UUID nor a Y2... id", id)
	}
	var dec []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.RawStdEncoding} {
		if dec, err = enc.DecodeString(strings.TrimRight(id, "=")); err == nil {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("%q: not valid base64: %w", id, err)
	}
	s := string(dec)
	i := strings.LastIndex(s, "/")
	if i < 0 || !strings.Contains(strings.ToUpper(s), "/ORGANIZATION/") || !isUUID(s[i+1:]) {
		return "", fmt.Errorf("%q decodes to %q, which does not end in /ORGANIZATION/<uuid>", id, s)
	}
	return strings.ToLower(s[i+1:]), nil
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}

// Open makes the sink. Secrets are read here so that a missing file is
// reported before a run starts; no call is made until Apply, Check or
// Existing.
func (c *Config) Open(env connector.Env) (connector.Sink, error) {
	return open(c, env)
}
