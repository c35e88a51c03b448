package ldaptest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// SlapdOptions says how to set up an OpenLDAP server.
type SlapdOptions struct {
	// Suffix of the database; default dc=example,dc=org. Its entry, an
	// ou=service entry and the reader account are created by the harness.
	Suffix string
	// LDIF files loaded with slapadd before the server starts; entries may
	// carry base64 values.
	LDIF []string
	// ExtraLDIF is LDIF text loaded after the files (generated bulk entries).
	ExtraLDIF string
	// SessionLog sizes syncprov's session log, which lets a sync refresh
	// report deletions explicitly (delete phase); 0 leaves it out so the
	// server answers refreshes with a present phase.
	SessionLog int
}

// Slapd is a running OpenLDAP server.
type Slapd struct {
	URL          string // ldap://127.0.0.1:PORT (StartTLS available)
	LDAPSURL     string // ldaps://127.0.0.1:PORT
	Suffix       string
	RootDN       string // manager: writes, unlimited
	RootPassword string
	ReaderDN     string // a service account that can only read
	ReaderPass   string
	PKI          *PKI // CAFile is what clients trust
	Dir          string

	mu   sync.Mutex // guards proc: a test may kill the server from a proxy's goroutine
	proc *proc
	// bin, conf and logPath let Restart start the same server again.
	bin, conf, logPath string
}

// StartSlapd starts a server for one test (or benchmark) and stops it when
// tb ends. A server that cannot start skips tb, or fails it in CI.
func StartSlapd(tb testing.TB, opts SlapdOptions) *Slapd {
	tb.Helper()
	s, err := NewSlapd(tb.TempDir(), opts)
	Require(tb, err)
	tb.Cleanup(s.Stop)
	return s
}

// NewSlapd starts a server whose files live in dir; the caller calls Stop.
// TestMain uses it to share one server between the tests of a package.
func NewSlapd(dir string, opts SlapdOptions) (*Slapd, error) {
	if err := ensureInstalled("slapd", []string{"slapd"}, "slapd", "ldap-utils"); err != nil {
		return nil, fmt.Errorf("slapd: %w", err)
	}
	slapd, err := exec.LookPath("slapd")
	if err != nil {
		// Debian puts it in /usr/sbin, which a test's PATH may lack.
		slapd = "/usr/sbin/slapd"
	}
	slapadd := filepath.Join(filepath.Dir(slapd), "slapadd")
	if opts.Suffix == "" {
		opts.Suffix = "dc=example,dc=org"
	}
	s := &Slapd{
		Suffix:       opts.Suffix,
		RootDN:       "cn=admin," + opts.Suffix,
		RootPassword: "admin-secret",
		ReaderDN:     "cn=reader,ou=service," + opts.Suffix,
		ReaderPass:   "reader-secret",
		Dir:          dir,
	}
	if s.PKI, err = NewPKI(dir, "slapd"); err != nil {
		return nil, err
	}
	dbDir := filepath.Join(dir, "db")
	if err := os.MkdirAll(dbDir, 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(conf, []byte(s.config(dbDir, opts.SessionLog)), 0o600); err != nil {
		return nil, err
	}
	ldif, err := s.ldif(opts)
	if err != nil {
		return nil, err
	}
	ldifPath := filepath.Join(dir, "load.ldif")
	if err := os.WriteFile(ldifPath, ldif, 0o600); err != nil {
		return nil, err
	}
	// -w writes the syncprov context CSN, so that sync cookies work from
	// the first search; -q skips checks the generated data does not need.
	if out, err := runCmd(os.Environ(), slapadd, "-f", conf, "-q", "-w", "-l", ldifPath); err != nil {
		return nil, fmt.Errorf("slapd: slapadd: %w\n%s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p1, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("slapd: %w", err)
		}
		p2, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("slapd: %w", err)
		}
		s.URL = fmt.Sprintf("ldap://127.0.0.1:%d", p1)
		s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d", p2)
		logPath := filepath.Join(dir, "slapd.log")
		s.bin, s.conf, s.logPath = slapd, conf, logPath
		if err := s.start(); err != nil {
			return nil, err
		}
		if lastErr = s.waitReady(); lastErr == nil {
			return s, nil
		}
		s.proc.stop()
		lastErr = fmt.Errorf("slapd: %w\n%s", lastErr, tail(logPath))
	}
	return nil, lastErr
}

func (s *Slapd) start() error {
	var err error
	// -d keeps slapd in the foreground, as our child, never a service.
	s.proc, err = startProc(s.logPath, s.bin, "-d", "0", "-f", s.conf, "-h", s.URL+"/ "+s.LDAPSURL+"/")
	if err != nil {
		return fmt.Errorf("slapd: %w", err)
	}
	return nil
}

// Kill ends the server at once with SIGKILL, as a crash would: open
// connections are cut mid-answer.
func (s *Slapd) Kill() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
}

// Restart starts a killed or stopped server again, on the same ports and
// over the same database.
func (s *Slapd) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("slapd: already running")
	}
	if err := s.start(); err != nil {
		return err
	}
	if err := s.waitReady(); err != nil {
		s.proc.stop()
		s.proc = nil
		return fmt.Errorf("slapd: restart: %w\n%s", err, tail(s.logPath))
	}
	return nil
}

func (s *Slapd) waitReady() error {
	host := strings.TrimPrefix(s.URL, "ldap://")
	if err := waitTCP(s.proc, host, 30*time.Second); err != nil {
		return err
	}
	return waitTCP(s.proc, strings.TrimPrefix(s.LDAPSURL, "ldaps://"), 30*time.Second)
}

// Stop ends the server.
func (s *Slapd) Stop() {
	if s != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.proc.stop()
		s.proc = nil
	}
}

// Conn returns a connection bound as the manager, for tests that change
// the directory.
func (s *Slapd) Conn() (*ldap.Conn, error) {
	c, err := ldap.DialURL(s.URL)
	if err != nil {
		return nil, err
	}
	if err := c.Bind(s.RootDN, s.RootPassword); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (s *Slapd) config(dbDir string, sessionLog int) string {
	var b strings.Builder
	for _, sc := range []string{"core", "cosine", "inetorgperson", "nis"} {
		fmt.Fprintf(&b, "include /etc/ldap/schema/%s.schema\n", sc)
	}
	fmt.Fprintf(&b, `modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
TLSCACertificateFile %[2]s
TLSCertificateFile %[3]s
TLSCertificateKeyFile %[4]s

database mdb
suffix "%[5]s"
rootdn "%[6]s"
rootpw %[7]s
directory %[8]s
maxsize 1073741824
index objectClass eq
index entryUUID,entryCSN eq
limits dn.exact="%[9]s" size=unlimited time=unlimited
access to attrs=userPassword by anonymous auth by * none
access to * by * read
overlay syncprov
syncprov-checkpoint 100 10
`, s.Dir, s.PKI.CAFile, s.PKI.CertFile, s.PKI.KeyFile, s.Suffix, s.RootDN, s.RootPassword, dbDir, s.ReaderDN)
	if sessionLog > 0 {
		fmt.Fprintf(&b, "syncprov-sessionlog %d\n", sessionLog)
	}
	return b.String()
}

func (s *Slapd) ldif(opts SlapdOptions) ([]byte, error) {
	rdn, _, _ := strings.Cut(s.Suffix, ",")
	attr, val, _ := strings.Cut(rdn, "=")
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n%s: %s\no: %s\n\n", s.Suffix, attr, val, val)
	fmt.Fprintf(&b, "dn: ou=service,%s\nobjectClass: organizationalUnit\nou: service\n\n", s.Suffix)
	fmt.Fprintf(&b, "dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: %s\n\n", s.ReaderDN, s.ReaderPass)
	for _, f := range opts.LDIF {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("slapd: %w", err)
		}
		b.Write(data)
		b.WriteString("\n\n")
	}
	b.WriteString(opts.ExtraLDIF)
	return []byte(b.String()), nil
}
