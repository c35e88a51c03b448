package ldaptest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// SambaOptions says how to provision the Active Directory domain.
type SambaOptions struct {
	Realm         string // default CORP.EXAMPLE
	Domain        string // NetBIOS name, default CORP
	AdminPassword string // default a fixed test password
}

// SambaAD is a running Samba AD domain controller. Samba's LDAP ports are
// fixed (389 and 636), so only one can run on the machine at a time: tests
// that use it must not run in parallel with each other.
type SambaAD struct {
	URL           string // ldaps://127.0.0.1:636
	LDAPURL       string // ldap://127.0.0.1:389 (simple binds refused without TLS)
	BaseDN        string // DC=corp,DC=example
	SuppliersDN   string // OU=Suppliers,DC=corp,DC=example, created empty
	AdminDN       string
	AdminPassword string
	PKI           *PKI
	Dir           string

	proc *proc
	lock *os.File
}

// StartSambaAD provisions and starts a domain controller for tb, stopped
// when tb ends. One that cannot start skips tb, or fails it in CI.
func StartSambaAD(tb testing.TB, opts SambaOptions) *SambaAD {
	tb.Helper()
	s, err := NewSambaAD(tb.TempDir(), opts)
	Require(tb, err)
	tb.Cleanup(s.Stop)
	return s
}

// NewSambaAD provisions a domain into dir and starts samba; the caller
// calls Stop.
func NewSambaAD(dir string, opts SambaOptions) (*SambaAD, error) {
	if err := ensureInstalled("samba-tool", []string{"samba-ad-dc", "samba", "smbd", "nmbd", "winbind"},
		"samba", "samba-ad-dc", "samba-ad-provision"); err != nil {
		return nil, fmt.Errorf("samba: %w", err)
	}
	if opts.Realm == "" {
		opts.Realm = "CORP.EXAMPLE"
	}
	if opts.Domain == "" {
		opts.Domain = "CORP"
	}
	if opts.AdminPassword == "" {
		opts.AdminPassword = "Adm1n-Test-Passw0rd"
	}
	// Samba's ports are fixed: packages tested at the same time take turns.
	lock, err := lockFile(filepath.Join(os.TempDir(), "contactsync-ldaptest-samba.lock"))
	if err != nil {
		return nil, fmt.Errorf("samba: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	for _, port := range []string{"389", "636"} {
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			return nil, fmt.Errorf("samba: port %s is taken (another samba or slapd?): %w", port, err)
		}
		l.Close()
	}
	var dcs []string
	for _, part := range strings.Split(strings.ToLower(opts.Realm), ".") {
		dcs = append(dcs, "DC="+part)
	}
	s := &SambaAD{
		URL:           "ldaps://127.0.0.1:636",
		LDAPURL:       "ldap://127.0.0.1:389",
		BaseDN:        strings.Join(dcs, ","),
		AdminPassword: opts.AdminPassword,
		Dir:           dir,
		lock:          lock,
	}
	s.AdminDN = "CN=Administrator,CN=Users," + s.BaseDN
	s.SuppliersDN = "OU=Suppliers," + s.BaseDN
	target := filepath.Join(dir, "dc")
	tool, err := lookSbin("samba-tool")
	if err != nil {
		return nil, err
	}
	out, err := runCmd(os.Environ(), tool, "domain", "provision",
		"--realm="+opts.Realm, "--domain="+opts.Domain, "--server-role=dc", "--dns-backend=NONE",
		"--use-rfc2307", "--adminpass="+opts.AdminPassword, "--targetdir="+target, "--host-ip=127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("samba: samba-tool domain provision: %w\n%s", err, lastLines(out))
	}
	if s.PKI, err = NewPKI(dir, "samba"); err != nil {
		return nil, err
	}
	conf := filepath.Join(target, "etc", "smb.conf")
	if err := s.tuneConfig(conf, target); err != nil {
		return nil, err
	}
	samba, err := lookSbin("samba")
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "samba.log")
	// -i keeps samba in the foreground as our child; -M single avoids a
	// prefork pool of LDAP workers the tests do not need.
	s.proc, err = startProc(logPath, samba, "-i", "-M", "single", "-s", conf)
	if err != nil {
		return nil, fmt.Errorf("samba: %w", err)
	}
	if err := s.waitReady(); err != nil {
		s.proc.stop()
		return nil, fmt.Errorf("samba: %w\n%s", err, tail(logPath))
	}
	c, err := s.Conn()
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("samba: %w", err)
	}
	defer c.Close()
	add := ldap.NewAddRequest(s.SuppliersDN, nil)
	add.Attribute("objectClass", []string{"top", "organizationalUnit"})
	add.Attribute("ou", []string{"Suppliers"})
	if err := c.Add(add); err != nil {
		s.Stop()
		return nil, fmt.Errorf("samba: add %s: %w", s.SuppliersDN, err)
	}
	ok = true
	return s, nil
}

// tuneConfig keeps the DC on loopback with only its LDAP service, and
// gives it our certificate for 127.0.0.1 instead of the self-signed one it
// would make for its host name.
func (s *SambaAD) tuneConfig(conf, target string) error {
	b, err := os.ReadFile(conf)
	if err != nil {
		return fmt.Errorf("samba: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		key, _, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch strings.TrimSpace(key) {
		case "server services":
			line = "\tserver services = ldap"
			for _, opt := range []string{
				"interfaces = 127.0.0.1",
				"bind interfaces only = yes",
				"tls enabled = yes",
				"tls keyfile = " + s.PKI.KeyFile,
				"tls certfile = " + s.PKI.CertFile,
				"tls cafile = " + s.PKI.CAFile,
				"pid directory = " + filepath.Join(target, "run"),
				"ncalrpc dir = " + filepath.Join(target, "ncalrpc"),
				"dcerpc endpoint servers = none",
			} {
				line += "\n\t" + opt
			}
		case "log file":
			line = "\tlog file = " + filepath.Join(target, "log.%m")
		}
		out = append(out, line)
	}
	for _, d := range []string{"run", "ncalrpc"} {
		if err := os.MkdirAll(filepath.Join(target, d), 0o755); err != nil {
			return fmt.Errorf("samba: %w", err)
		}
	}
	return os.WriteFile(conf, []byte(strings.Join(out, "\n")), 0o644)
}

func (s *SambaAD) waitReady() error {
	if err := waitTCP(s.proc, "127.0.0.1:636", 90*time.Second); err != nil {
		return err
	}
	// The port opens before the directory is ready for binds.
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := s.Conn()
		if err == nil {
			c.Close()
			return nil
		}
		if s.proc.exited() || time.Now().After(deadline) {
			return fmt.Errorf("no LDAPS bind: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TLSConfig trusts the DC's test CA.
func (s *SambaAD) TLSConfig() (*tls.Config, error) {
	pem, err := os.ReadFile(s.PKI.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, nil
}

// Conn returns an LDAPS connection bound as the domain administrator.
func (s *SambaAD) Conn() (*ldap.Conn, error) {
	tc, err := s.TLSConfig()
	if err != nil {
		return nil, err
	}
	c, err := ldap.DialURL(s.URL, ldap.DialWithTLSConfig(tc))
	if err != nil {
		return nil, err
	}
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Stop ends the domain controller and lets the next one start.
func (s *SambaAD) Stop() {
	if s != nil {
		s.proc.stop()
		s.proc = nil
		if s.lock != nil {
			s.lock.Close()
			s.lock = nil
		}
	}
}

// lockFile takes an exclusive lock on path, waiting for its holder; the
// lock goes with the file's closing or the process's end.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

func lookSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("samba: %s not found", name)
}

func lastLines(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}
