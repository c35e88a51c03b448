// Package ldap is the LDAP / Active Directory source of contactsync
// (source.ldap in the YAML): a paged, streamed search of one base DN, with
// incremental pulls through RFC 4533 content synchronisation on OpenLDAP
// (syncprov) and uSNChanged plus tombstones on Active Directory.
package ldap

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/contactsync/contactsync/connector"
	goldap "github.com/go-ldap/ldap/v3"
)

// Config is source.ldap. Example, Active Directory over LDAPS:
//
//	source:
//	  ldap:
//	    url: ldaps://dc1.corp.example:636
//	    ca_file: ldap-ca.pem               # relative to the config file
//	    bind_dn: CN=svc-contactsync,OU=Service,DC=corp,DC=example
//	    bind_password_file: ldap.password  # or $CREDENTIALS_DIRECTORY/ldap.password
//	    base_dn: OU=Suppliers,DC=corp,DC=example
//	    filter: (objectClass=contact)
//	    # key: objectGUID                  # default: objectGUID on AD, entryUUID elsewhere
//	    page_size: 500
//	    incremental: auto                  # auto | off
//	    timeout: 30s
//
// OpenLDAP with StartTLS:
//
//	source:
//	  ldap:
//	    url: ldap://ldap.corp.example
//	    start_tls: true
//	    ca_file: /etc/ssl/certs/corp-ca.pem
//	    bind_dn: cn=contactsync,ou=service,dc=corp,dc=example
//	    bind_password_file: /etc/contactsync/ldap.password
//	    base_dn: ou=suppliers,dc=corp,dc=example
//	    filter: (objectClass=inetOrgPerson)
type Config struct {
	URL                string        `yaml:"url"`
	StartTLS           bool          `yaml:"start_tls"`
	CAFile             string        `yaml:"ca_file"`
	InsecureSkipVerify bool          `yaml:"insecure_skip_verify"`
	BindDN             string        `yaml:"bind_dn"`
	BindPasswordFile   string        `yaml:"bind_password_file"`
	BaseDN             string        `yaml:"base_dn"`
	Filter             string        `yaml:"filter"`
	Key                string        `yaml:"key"`
	PageSize           int           `yaml:"page_size"`
	Incremental        string        `yaml:"incremental"`
	Timeout            time.Duration `yaml:"timeout"`
}

var _ connector.SourceConfig = (*Config)(nil)

// Defaults for keys left out.
const (
	DefaultPageSize = 500
	DefaultTimeout  = 30 * time.Second
	DefaultFilter   = "(objectClass=*)"
)

// Validate reports every problem with its YAML path, fills in defaults and
// resolves relative file names against the configuration's folder.
func (c *Config) Validate(v *connector.Validator) {
	c.URL = strings.TrimSpace(c.URL)
	if c.URL == "" {
		v.Errorf("url", "must be set (ldap://host or ldaps://host:636)")
	} else if u, err := url.Parse(c.URL); err != nil || u.Host == "" {
		v.Errorf("url", "%q is not an LDAP URL (ldap://host:389 or ldaps://host:636)", c.URL)
	} else {
		switch strings.ToLower(u.Scheme) {
		case "ldap":
		case "ldaps":
			if c.StartTLS {
				v.Errorf("start_tls", "cannot be used with ldaps:// (the connection is already TLS)")
			}
		default:
			v.Errorf("url", "scheme %q is not supported: use ldap:// or ldaps://", u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			v.Errorf("url", "must not carry a DN or query: use base_dn and filter")
		}
		if u.User != nil {
			v.Errorf("url", "must not carry credentials: use bind_dn and bind_password_file")
		}
	}
	if c.CAFile != "" && c.InsecureSkipVerify {
		v.Errorf("insecure_skip_verify", "ca_file is set: certificate verification cannot also be turned off")
	}
	v.ResolvePath(&c.CAFile)
	v.ResolvePath(&c.BindPasswordFile)
	switch {
	case c.BindDN != "" && c.BindPasswordFile == "":
		v.Errorf("bind_password_file", "must be set when bind_dn is set")
	case c.BindDN == "" && c.BindPasswordFile != "":
		v.Errorf("bind_dn", "must be set when bind_password_file is set")
	}
	if c.BindDN != "" {
		if _, err := goldap.ParseDN(c.BindDN); err != nil {
			v.Errorf("bind_dn", "%q is not a DN: %v", c.BindDN, err)
		}
	}
	if strings.TrimSpace(c.BaseDN) == "" {
		v.Errorf("base_dn", "must be set (the OU or subtree holding the contacts)")
	} else if _, err := goldap.ParseDN(c.BaseDN); err != nil {
		v.Errorf("base_dn", "%q is not a DN: %v", c.BaseDN, err)
	}
	if strings.TrimSpace(c.Filter) == "" {
		c.Filter = DefaultFilter
	} else {
		if !strings.HasPrefix(strings.TrimSpace(c.Filter), "(") {
			c.Filter = "(" + strings.TrimSpace(c.Filter) + ")"
		}
		if _, err := goldap.CompileFilter(c.Filter); err != nil {
			v.Errorf("filter", "%q is not an LDAP filter: %v", c.Filter, err)
		}
	}
	if c.Key != "" && !validAttrName(c.Key) {
		v.Errorf("key", "%q is not an attribute name", c.Key)
	}
	switch {
	case c.PageSize == 0:
		c.PageSize = DefaultPageSize
	case c.PageSize < 0 || c.PageSize > 100000:
		v.Errorf("page_size", "must be between 1 and 100000, got %d", c.PageSize)
	}
	switch strings.ToLower(c.Incremental) {
	case "":
		c.Incremental = "auto"
	case "auto", "off":
		c.Incremental = strings.ToLower(c.Incremental)
	default:
		v.Errorf("incremental", "must be auto or off, got %q", c.Incremental)
	}
	switch {
	case c.Timeout == 0:
		c.Timeout = DefaultTimeout
	case c.Timeout < 0:
		v.Errorf("timeout", "must be positive, got %v", c.Timeout)
	}
}

func validAttrName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == ';'):
		case r >= '0' && r <= '9' || r == '.': // numeric OID
		default:
			return false
		}
	}
	return true
}

// Open makes the source; it connects on Pull and Check. Validate must have
// been called.
func (c *Config) Open(env connector.Env) (connector.Source, error) {
	if c.URL == "" || c.BaseDN == "" {
		return nil, fmt.Errorf("ldap: open: configuration not validated (url and base_dn are required)")
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := *c
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Filter == "" {
		cfg.Filter = DefaultFilter
	}
	return &Source{cfg: cfg, log: log.With("source", "ldap")}, nil
}
