package ldaptest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestSlapdTLS(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{})
	pem, err := os.ReadFile(s.PKI.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	c, err := ldap.DialURL(s.LDAPSURL, ldap.DialWithTLSConfig(tc))
	if err != nil {
		t.Fatalf("ldaps: %v", err)
	}
	if err := c.Bind(s.ReaderDN, s.ReaderPass); err != nil {
		t.Fatalf("bind reader over ldaps: %v", err)
	}
	c.Close()

	c, err = ldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(tc); err != nil {
		t.Fatalf("starttls: %v", err)
	}
	if err := c.Bind(s.ReaderDN, s.ReaderPass); err != nil {
		t.Fatalf("bind reader after starttls: %v", err)
	}
}
