package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/contactsync/contactsync/connector"
	goldap "github.com/go-ldap/ldap/v3"
)

// Source pulls records from one LDAP server. Each Pull or Check opens its
// own connection and closes it before returning: nightly jobs gain nothing
// from a connection kept idle for a day, and a firewall would cut it anyway.
type Source struct {
	cfg Config
	log *slog.Logger
}

var (
	_ connector.Source  = (*Source)(nil)
	_ connector.Checker = (*Source)(nil)
	_ connector.Closer  = (*Source)(nil)
)

// Close releases nothing: connections live for one call.
func (s *Source) Close() error { return nil }

// Identity names what is read, for the audit; never a secret.
func (s *Source) Identity() string {
	return fmt.Sprintf("%s base=%s filter=%s", s.displayURL(), s.cfg.BaseDN, s.cfg.Filter)
}

// displayURL is the URL with its default port spelled out, so that the
// audit says exactly where the data came from.
func (s *Source) displayURL() string {
	u, err := url.Parse(s.cfg.URL)
	if err != nil {
		return s.cfg.URL
	}
	host := u.Host
	if u.Port() == "" {
		if strings.EqualFold(u.Scheme, "ldaps") {
			host = net.JoinHostPort(u.Hostname(), "636")
		} else {
			host = net.JoinHostPort(u.Hostname(), "389")
		}
	}
	return strings.ToLower(u.Scheme) + "://" + host
}

func (s *Source) tlsConfig() (*tls.Config, error) {
	u, err := url.Parse(s.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("ldap: url %q: %w", s.cfg.URL, err)
	}
	tc := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if s.cfg.InsecureSkipVerify {
		tc.InsecureSkipVerify = true
		return tc, nil
	}
	if s.cfg.CAFile != "" {
		// Read on every connection so that a renewed CA file is picked up
		// by the daemon without a reload.
		pem, err := os.ReadFile(s.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ldap: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ldap: ca_file %s: no PEM certificate in it", s.cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// credentials reads the bind password and makes the TLS configuration.
// The password is read on every connection, so that a rotated password
// file takes effect without a restart.
func (s *Source) credentials() (connector.Secret, *tls.Config, error) {
	var pw connector.Secret
	if s.cfg.BindDN != "" {
		var err error
		if pw, err = connector.ReadSecretFile(s.cfg.BindPasswordFile); err != nil {
			return pw, nil, fmt.Errorf("ldap: bind_password_file: %w", err)
		}
	}
	tc, err := s.tlsConfig()
	return pw, tc, err
}

// connect dials, secures and binds.
func (s *Source) connect(ctx context.Context) (*goldap.Conn, error) {
	if s.cfg.InsecureSkipVerify && (s.cfg.StartTLS || strings.HasPrefix(strings.ToLower(s.cfg.URL), "ldaps:")) {
		s.log.Warn("ldap: insecure_skip_verify is set: the server's certificate is not checked, so anyone on the path can read the bind password", "url", s.displayURL())
	}
	pw, tc, err := s.credentials()
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: s.cfg.Timeout}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	conn, err := goldap.DialURL(s.cfg.URL, goldap.DialWithDialer(d), goldap.DialWithTLSConfig(tc))
	if err != nil {
		return nil, s.connError(err)
	}
	// The request timeout guards the short operations (StartTLS, bind, root
	// DSE); streaming searches turn it off and use an idle watchdog, because
	// go-ldap drops responses that wait longer than it for a slow consumer.
	conn.SetTimeout(s.cfg.Timeout)
	if s.cfg.StartTLS {
		if err := conn.StartTLS(tc); err != nil {
			conn.Close()
			return nil, s.startTLSError(err)
		}
	}
	if s.cfg.BindDN != "" {
		err = conn.Bind(s.cfg.BindDN, pw.Reveal())
	} else {
		err = conn.UnauthenticatedBind("")
	}
	if err != nil {
		conn.Close()
		return nil, s.bindError(err)
	}
	return conn, nil
}

func (s *Source) startTLSError(err error) error {
	return fmt.Errorf("ldap: StartTLS with %s failed (is ca_file the CA that signed the server's certificate?): %w", s.displayURL(), err)
}

func (s *Source) bindError(err error) error {
	where := s.displayURL()
	if goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
		return fmt.Errorf("ldap: bind to %s as %q: invalid credentials (LDAP result 49): check bind_dn and bind_password_file: %w", where, s.cfg.BindDN, err)
	}
	return fmt.Errorf("ldap: bind to %s as %q: %w", where, s.cfg.BindDN, err)
}

func (s *Source) connError(err error) error {
	where := s.displayURL()
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ce *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ue), errors.As(err, &ce):
		return fmt.Errorf("ldap: TLS with %s failed: the server's certificate is not signed by a trusted CA (set ca_file to the CA that signed it): %w", where, err)
	case errors.As(err, &he):
		return fmt.Errorf("ldap: TLS with %s failed: the certificate does not name this host (use the host name it was issued for in url): %w", where, err)
	case strings.Contains(err.Error(), "tls:"):
		return fmt.Errorf("ldap: TLS with %s failed: %w", where, err)
	}
	return fmt.Errorf("ldap: connect to %s: %w", where, err)
}

// searchError explains the LDAP result codes an operator can act on.
func (s *Source) searchError(what string, err error) error {
	where := s.displayURL()
	switch {
	case goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject):
		return fmt.Errorf("ldap: %s on %s: no such base DN %q (LDAP result 32): %w", what, where, s.cfg.BaseDN, err)
	case goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded):
		return fmt.Errorf("ldap: %s on %s: size limit exceeded (LDAP result 4): the server caps how many entries %s may read; lift the limit for this account (OpenLDAP: limits ... size=unlimited; AD: MaxPageSize) or lower page_size: %w", what, where, s.who(), err)
	case goldap.IsErrorWithCode(err, goldap.LDAPResultTimeLimitExceeded):
		return fmt.Errorf("ldap: %s on %s: time limit exceeded (LDAP result 3): the server stopped the search; lift its time limit for this account or narrow base_dn/filter: %w", what, where, err)
	case goldap.IsErrorWithCode(err, goldap.LDAPResultInsufficientAccessRights):
		return fmt.Errorf("ldap: %s on %s: insufficient access rights (LDAP result 50) for %s: %w", what, where, s.who(), err)
	}
	return fmt.Errorf("ldap: %s on %s: %w", what, where, err)
}

func (s *Source) who() string {
	if s.cfg.BindDN == "" {
		return "an anonymous bind"
	}
	return strconv.Quote(s.cfg.BindDN)
}

// rootDSE is what the server says about itself.
type rootDSE struct {
	ad              bool // Active Directory (or Samba AD)
	syncprov        bool // RFC 4533 sync request control supported
	namingContexts  []string
	defaultNC       string
	dsServiceName   string
	highestUSN      string
	vendor, version string
}

const (
	oidADCapability = "1.2.840.113556.1.4.800"
	oidShowDeleted  = "1.2.840.113556.1.4.417"
)

func (s *Source) readRootDSE(conn *goldap.Conn) (*rootDSE, error) {
	req := goldap.NewSearchRequest("", goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, int(s.cfg.Timeout.Seconds()), false,
		"(objectClass=*)", []string{"supportedControl", "supportedCapabilities", "namingContexts", "defaultNamingContext",
			"dsServiceName", "highestCommittedUSN", "vendorName", "vendorVersion"}, nil)
	res, err := conn.Search(req)
	if err != nil {
		return nil, s.searchError("read root DSE", err)
	}
	if len(res.Entries) == 0 {
		return nil, fmt.Errorf("ldap: read root DSE on %s: no entry returned", s.displayURL())
	}
	e := res.Entries[0]
	d := &rootDSE{
		ad:             slices.Contains(e.GetAttributeValues("supportedCapabilities"), oidADCapability),
		syncprov:       slices.Contains(e.GetAttributeValues("supportedControl"), goldap.ControlTypeSyncRequest),
		namingContexts: e.GetAttributeValues("namingContexts"),
		defaultNC:      e.GetAttributeValue("defaultNamingContext"),
		dsServiceName:  e.GetAttributeValue("dsServiceName"),
		highestUSN:     e.GetAttributeValue("highestCommittedUSN"),
		vendor:         e.GetAttributeValue("vendorName"),
		version:        e.GetAttributeValue("vendorVersion"),
	}
	return d, nil
}

// namingContext returns the naming context that holds the base DN.
func (d *rootDSE) namingContext(base string) string {
	bdn, err := goldap.ParseDN(base)
	if err != nil {
		return ""
	}
	best, bestLen := "", -1
	for _, nc := range d.namingContexts {
		ndn, err := goldap.ParseDN(nc)
		if err != nil {
			continue
		}
		if (ndn.EqualFold(bdn) || ndn.AncestorOfFold(bdn)) && len(ndn.RDNs) > bestLen {
			best, bestLen = nc, len(ndn.RDNs)
		}
	}
	return best
}

// key is the configured key attribute, or the server's natural one.
func (s *Source) key(d *rootDSE) string {
	if s.cfg.Key != "" {
		return s.cfg.Key
	}
	if d.ad {
		return "objectGUID"
	}
	return "entryUUID"
}

// Check connects, binds, reads the root DSE and the base DN.
func (s *Source) Check(ctx context.Context) (string, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	d, err := s.readRootDSE(conn)
	if err != nil {
		return "", err
	}
	req := goldap.NewSearchRequest(s.cfg.BaseDN, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, int(s.cfg.Timeout.Seconds()), false,
		"(objectClass=*)", []string{"1.1"}, nil)
	if _, err := conn.Search(req); err != nil {
		return "", s.searchError("read base DN", err)
	}
	kind := "LDAP server"
	switch {
	case d.ad:
		kind = "Active Directory"
	case d.vendor != "":
		kind = d.vendor
	case d.syncprov:
		kind = "OpenLDAP (syncprov)"
	}
	bind := "anonymously"
	if s.cfg.BindDN != "" {
		bind = "as " + s.cfg.BindDN
	}
	sec := "no TLS"
	if _, ok := conn.TLSConnectionState(); ok {
		sec = "TLS verified"
		if s.cfg.InsecureSkipVerify {
			sec = "TLS NOT verified (insecure_skip_verify)"
		}
	}
	return fmt.Sprintf("%s: %s, bound %s, %s, base %s readable, key %s, incremental %s",
		s.displayURL(), sec, bind, kind, s.cfg.BaseDN, s.key(d), s.incrementalMode(d, s.key(d))), nil
}
