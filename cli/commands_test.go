package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPreviewVersionUsage(t *testing.T) {
	e := newEnv(t, "10")
	e.dropFile("scenario/night1.csv", "suppliers-2026-11-23.csv")

	out := e.mustRun(ExitOK, "check")
	for _, want := range []string{"config  ok", "state   ok", "source  ok    suppliers: csv", "unread", "sink    ok    suppliers: csv outbox"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	// A broken part: the drop folder is gone.
	if err := os.RemoveAll(e.drop); err != nil {
		t.Fatal(err)
	}
	code, out, _ := e.run("check")
	if code != ExitFailed || !strings.Contains(out, "source  FAIL") {
		t.Errorf("check with a missing drop folder: exit %d\n%s", code, out)
	}
	if err := os.MkdirAll(e.drop, 0o755); err != nil {
		t.Fatal(err)
	}
	e.dropFile("scenario/night1.csv", "suppliers-2026-11-23.csv")

	out = e.mustRun(ExitOK, "preview", "--job", "suppliers", "--limit", "7")
	for _, want := range []string{`record 1  key "SUP-0001"`, `Display Name`, `"Élodie Lefèvre (Boulangerie Müller & Fils)"`,
		`Phone Number 1`, `"+33142685300"`, `-> rejected: phone_1: invalid phone number "12ab" for region FR`} {
		if !strings.Contains(out, want) {
			t.Errorf("preview output lacks %q:\n%s", want, out)
		}
	}
	// Preview consumes nothing: the next sync still reads the file.
	if out := e.mustRun(ExitRejected, "sync"); !strings.Contains(out, "created 6") {
		t.Errorf("sync after preview:\n%s", out)
	}

	out = e.mustRun(ExitOK, "version")
	if !strings.HasPrefix(out, "contactsync ") {
		t.Errorf("version: %q", out)
	}
	for _, args := range [][]string{{"sync", "extra"}, {"show"}, {"show", "x"}, {"reconcile", "--job", "suppliers"}, {"approve"}, {"nosuch"}, {"history", "--limit", "0"}} {
		if code, _, _ := e.run(args...); code != ExitUsage {
			t.Errorf("contactsync %v: exit %d, want 2", args, code)
		}
	}
	if code, _, errs := e.run("sync", "--job", "nosuch"); code != ExitUsage || !strings.Contains(errs, `no job named "nosuch"`) {
		t.Errorf("unknown job: exit %d %q", code, errs)
	}
	out = e.mustRun(ExitOK, "show", "1")
	for _, want := range []string{"status    ok", "figures   created 6", "+ create  SUP-0001", `phone_1          "+33142685300"`, "rejected records (1):"} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}
	out = e.mustRun(ExitOK, "history")
	if !strings.Contains(out, "ID  JOB") || !strings.Contains(out, "suppliers  sync") {
		t.Errorf("history output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state.db")); err != nil {
		t.Fatal(err)
	}
}
