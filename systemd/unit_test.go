package systemd

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const binary = "/usr/local/bin/contactsync"

// maxExposure is the highest `systemd-analyze security` score accepted.
const maxExposure = 2.0

// settings reads a unit file into key -> values, in order.
func settings(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not a key=value line: %q", name, line)
		}
		out[k] = append(out[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnitSettings checks what the daemon and the docs rely on, without
// systemd.
func TestUnitSettings(t *testing.T) {
	tests := []struct {
		unit string
		key  string
		want string
	}{
		{"contactsync.service", "Type", "notify"},
		{"contactsync.service", "NotifyAccess", "main"},
		{"contactsync.service", "ExecStart", binary + " run -c /etc/contactsync/config.yaml"},
		{"contactsync.service", "ExecReload", "/bin/kill -HUP $MAINPID"},
		{"contactsync.service", "WatchdogSec", "5min"},
		{"contactsync.service", "StateDirectory", "contactsync"},
		{"contactsync.service", "User", "contactsync"},
		// ReadSecretFile looks credentials up by the base name of the
		// configured file: the ids must be those base names.
		{"contactsync.service", "LoadCredential", "ldap.password:/etc/contactsync/ldap.password"},
		{"contactsync.service", "LoadCredential", "webex.token:/etc/contactsync/webex.token"},
		{"contactsync-sync@.service", "Type", "oneshot"},
		{"contactsync-sync@.service", "ExecStart", binary + " sync --job %i -c /etc/contactsync/config.yaml"},
		{"contactsync-sync@.service", "StateDirectory", "contactsync"},
		{"contactsync-sync@.service", "User", "contactsync"},
		{"contactsync-sync@.timer", "OnCalendar", "*-*-* 02:00:00"},
	}
	for _, tt := range tests {
		t.Run(tt.unit+"/"+tt.key+"="+tt.want, func(t *testing.T) {
			got := settings(t, tt.unit)[tt.key]
			for _, v := range got {
				if v == tt.want {
					return
				}
			}
			t.Errorf("%s: %s=%q, want %q", tt.unit, tt.key, got, tt.want)
		})
	}
}

// stage copies the units into a temporary folder with ExecStart pointing
// at an executable that exists (verify checks it), plus instances of the
// templates, and returns the folder.
func stage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	exe := filepath.Join(dir, "contactsync")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	copies := map[string]string{
		"contactsync.service":       "contactsync.service",
		"contactsync-sync@.service": "contactsync-sync@.service",
		"contactsync-sync@.timer":   "contactsync-sync@.timer",
	}
	for src, dst := range map[string]string{
		"contactsync-sync@.service": "contactsync-sync@suppliers.service",
		"contactsync-sync@.timer":   "contactsync-sync@suppliers.timer",
	} {
		copies[dst] = src
	}
	for dst, src := range copies {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(binary), []byte(exe))
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func analyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	return p
}

// TestVerify: `systemd-analyze verify` must say nothing at all; it reports
// unknown keys and bad values as warnings with exit status 0.
func TestVerify(t *testing.T) {
	sa := analyze(t)
	dir := stage(t)
	for _, unit := range []string{
		"contactsync.service",
		"contactsync-sync@.service", "contactsync-sync@.timer",
		"contactsync-sync@suppliers.service", "contactsync-sync@suppliers.timer",
	} {
		t.Run(unit, func(t *testing.T) {
			cmd := exec.Command(sa, "verify", filepath.Join(dir, unit))
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
			}
		})
	}
}

var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+\.[0-9]+)`)

// TestSecurity: each service rates maxExposure or lower.
func TestSecurity(t *testing.T) {
	sa := analyze(t)
	dir := stage(t)
	for _, unit := range []string{"contactsync.service", "contactsync-sync@suppliers.service"} {
		t.Run(unit, func(t *testing.T) {
			cmd := exec.Command(sa, "security", "--offline=true", "--no-pager", filepath.Join(dir, unit))
			out, err := cmd.CombinedOutput()
			m := exposure.FindSubmatch(out)
			if m == nil {
				t.Fatalf("systemd-analyze security %s: %v: no score in\n%s", unit, err, out)
			}
			score, err := strconv.ParseFloat(string(m[1]), 64)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s exposure %.1f", unit, score)
			if score > maxExposure {
				t.Errorf("%s rates %.1f, want %.1f or lower:\n%s", unit, score, maxExposure, out)
			}
		})
	}
}
