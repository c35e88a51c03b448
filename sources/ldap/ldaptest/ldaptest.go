// Package ldaptest starts real directory servers for tests and benchmarks:
// an OpenLDAP slapd on free loopback ports with a generated configuration
// (mdb, syncprov, a test CA for ldaps:// and StartTLS), and a Samba Active
// Directory domain controller provisioned into a temporary folder.
//
// The servers are installed with apt-get when missing (the tests run as
// root on Debian). Outside CI a server that cannot be installed or started
// skips the test with the reason; with CI=true it fails it, so that a
// broken setup never passes as green.
package ldaptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI, where a missing server is a
// failure rather than a skip.
func InCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Require stops tb when err (from NewSlapd or NewSambaAD) is not nil: a
// failure in CI, a skip naming the reason elsewhere.
func Require(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if InCI() {
		tb.Fatalf("ldaptest: server unavailable in CI: %v", err)
	}
	tb.Skipf("ldaptest: server unavailable (set CI=true to make this a failure): %v", err)
}

var (
	aptMu      sync.Mutex
	aptUpdated bool
)

// ensureInstalled installs the Debian packages when binary is not on the
// machine, then stops whatever service their postinst started: the tests
// run their own servers on their own ports.
func ensureInstalled(binary string, services []string, pkgs ...string) error {
	aptMu.Lock()
	defer aptMu.Unlock()
	if _, err := exec.LookPath(binary); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is not installed and installing %v needs root", binary, pkgs)
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if !aptUpdated {
		if out, err := runCmd(env, "apt-get", "update"); err != nil {
			return fmt.Errorf("apt-get update: %w\n%s", err, out)
		}
		aptUpdated = true
	}
	args := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	if out, err := runCmd(env, "apt-get", args...); err != nil {
		return fmt.Errorf("apt-get install %v: %w\n%s", pkgs, err, out)
	}
	for _, svc := range services {
		// Best effort: without systemd (containers) there is nothing to stop
		// but a daemon started by the init script.
		_, _ = runCmd(env, "systemctl", "disable", "--now", svc)
		_, _ = runCmd(env, "service", svc, "stop")
	}
	if _, err := exec.LookPath(binary); err != nil {
		return fmt.Errorf("%s still missing after apt-get install %v", binary, pkgs)
	}
	return nil
}

func runCmd(env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.Bytes(), err
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the server binds it; the start then fails clearly.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// proc is a server process started in its own process group, so that Stop
// ends its children too.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

func startProc(logPath string, name string, args ...string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: lf}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL if it lingers.
func (p *proc) stop() {
	if p == nil {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	p.log.Close()
}

// kill sends SIGKILL to the process group and waits for the process.
func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	p.log.Close()
}

// waitTCP waits until addr accepts connections or the process dies.
func waitTCP(p *proc, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return errors.New("server exited before listening")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %v: %w", addr, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
