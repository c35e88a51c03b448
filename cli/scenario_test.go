package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// env is a contactsync installation in a temporary folder: a config, a
// drop folder, an outbox and a state file.
type env struct {
	t      *testing.T
	dir    string
	config string
	drop   string
	outbox string
	mtime  time.Time
}

const scenarioConfig = `state: state.db
log: {format: text, level: info}
listen: ""
jobs:
  - name: suppliers
    schedule: "@daily"
    source:
      csv:
        dir: drop
        pattern: "suppliers-*.csv"
        key: Supplier ID
    mapping:
      display_name: '{{index . "Contact first name"}} {{index . "Contact last name"}} ({{.Company}})'
      first_name: '{{index . "Contact first name"}}'
      last_name: '{{index . "Contact last name"}}'
      phones:
        - {value: "{{.Phone}}", type: work}
        - {value: "{{.Mobile}}", type: mobile}
      phone_region: FR
      email: "{{.Email}}"
      title: '{{index . "Job title"}}'
      company_name: "{{.Company}}"
      address: {street: "{{.Street}}", city: "{{.City}}", zip: "{{.Postcode}}", country: "{{.Country}}"}
    sink:
      csv:
        dir: outbox
    safety:
      max_delete_percent: %PERCENT%
`

func newEnv(t *testing.T, percent string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, config: filepath.Join(dir, "config.yaml"), drop: filepath.Join(dir, "drop"),
		outbox: filepath.Join(dir, "outbox"), mtime: time.Now().Add(-48 * time.Hour)}
	if err := os.MkdirAll(e.drop, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(scenarioConfig, "%PERCENT%", percent)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// drop copies a testdata file into the drop folder under name, with an
// mtime later than every earlier drop and old enough to have settled.
func (e *env) dropFile(src, name string) {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", src))
	if err != nil {
		e.t.Fatal(err)
	}
	e.dropAs(name, data)
}

// dropAs writes a drop file under name, newer than every earlier drop.
func (e *env) dropAs(name string, data []byte) {
	e.t.Helper()
	p := filepath.Join(e.drop, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.mtime = e.mtime.Add(time.Hour)
	if err := os.Chtimes(p, e.mtime, e.mtime); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) run(args ...string) (code int, stdout, stderr string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{args[0], "-c", e.config}, args[1:]...)
	code = Main(context.Background(), IO{Args: full, Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

func (e *env) mustRun(want int, args ...string) string {
	e.t.Helper()
	code, out, errs := e.run(args...)
	if code != want {
		e.t.Fatalf("contactsync %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errs)
	}
	return out
}

// outputs returns the outbox files of one run.
func (e *env) outputs(runID string) []string {
	e.t.Helper()
	ents, err := os.ReadDir(e.outbox)
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatal(err)
	}
	var out []string
	for _, d := range ents {
		if strings.Contains(d.Name(), "-run"+runID+"-") {
			out = append(out, d.Name())
		}
	}
	sort.Strings(out)
	return out
}

// golden compares the outbox files of a run with testdata/golden/step, byte for byte.
func (e *env) golden(step, runID string) {
	e.t.Helper()
	gdir := filepath.Join("testdata", "golden", step)
	got := e.outputs(runID)
	if *update {
		_ = os.RemoveAll(gdir)
		if err := os.MkdirAll(gdir, 0o755); err != nil {
			e.t.Fatal(err)
		}
		for _, name := range got {
			data, _ := os.ReadFile(filepath.Join(e.outbox, name))
			if err := os.WriteFile(filepath.Join(gdir, name), data, 0o644); err != nil {
				e.t.Fatal(err)
			}
		}
		return
	}
	want, _ := filepath.Glob(filepath.Join(gdir, "*"))
	for i := range want {
		want[i] = filepath.Base(want[i])
	}
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		e.t.Fatalf("%s: files %v, want %v", step, got, want)
	}
	for _, name := range got {
		g, _ := os.ReadFile(filepath.Join(e.outbox, name))
		w, _ := os.ReadFile(filepath.Join(gdir, name))
		if !bytes.Equal(g, w) {
			e.t.Errorf("%s: %s differs from the golden file (run with -update to accept)\ngot:\n%s\nwant:\n%s", step, name, g, w)
		}
	}
}

func (e *env) history() []connector.Run {
	e.t.Helper()
	var runs []connector.Run
	out := e.mustRun(ExitOK, "history", "--json", "--limit", "100")
	if err := json.Unmarshal([]byte(out), &runs); err != nil {
		e.t.Fatalf("history --json: %v\n%s", err, out)
	}
	return runs
}

func (e *env) show(id string) showDoc {
	e.t.Helper()
	var doc showDoc
	out := e.mustRun(ExitOK, "show", id, "--json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		e.t.Fatalf("show --json: %v\n%s", err, out)
	}
	return doc
}

// TestScenarioSeveralNights follows a CRM that drops a Windows-1252,
// semicolon-separated export every night: first import, reconcile with the
// Control Hub export, a night with a change, an addition and a removal, and
// a night with nothing new.
func TestScenarioSeveralNights(t *testing.T) {
	e := newEnv(t, "50")

	// Night 1: six creates, one record rejected (invalid phone), exit 4.
	e.dropFile("scenario/night1.csv", "suppliers-2026-11-23.csv")
	out := e.mustRun(ExitRejected, "sync")
	for _, want := range []string{"created 6", "rejected 1", `phone_1: invalid phone number "12ab"`} {
		if !strings.Contains(out, want) {
			t.Errorf("night 1 output lacks %q:\n%s", want, out)
		}
	}
	e.golden("night1", "000001")
	info, err := os.Stat(filepath.Join(e.outbox, "suppliers-run000001-import-001.csv"))
	if err != nil || info.Mode().Perm() != 0o640 {
		t.Errorf("import file mode: %v %v, want 0640", info, err)
	}

	// The same night again: no new file, nothing changes, nothing written.
	e.mustRun(ExitOK, "sync")
	if files := e.outputs("000002"); len(files) != 0 {
		t.Errorf("a run without a new drop wrote %v", files)
	}

	// The admin uploaded the file and downloaded the export: bind UUIDs.
	out = e.mustRun(ExitOK, "reconcile", "--job", "suppliers", filepath.Join("testdata", "scenario", "export-after-night1.csv"))
	for _, want := range []string{"bound      6", "unmatched  1"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("reconcile output lacks %q:\n%s", want, out)
		}
	}

	// Night 2: SUP-0002's number changed, SUP-0005 left, SUP-0006 was
	// fixed, SUP-0008 is new.
	e.dropFile("scenario/night2.csv", "suppliers-2026-11-24.csv")
	plan := e.mustRun(ExitOK, "plan")
	for _, want := range []string{"+ create  SUP-0006", "+ create  SUP-0008", "~ update  SUP-0002", "- delete  SUP-0005",
		`phone_1          "+33478421020" -> "+33478429999"`} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	if files := e.outputs("000004"); len(files) != 0 {
		t.Errorf("plan wrote files: %v", files)
	}
	e.mustRun(ExitOK, "sync")
	e.golden("night2", "000005")
	doc := e.show("5")
	got := map[string]string{}
	for _, c := range doc.Changes {
		got[c.Key] = string(c.Action)
	}
	want := map[string]string{"SUP-0002": "update", "SUP-0005": "delete", "SUP-0006": "create", "SUP-0008": "create"}
	if len(got) != len(want) {
		t.Errorf("run 5 changes %v, want %v", got, want)
	}
	for k, a := range want {
		if got[k] != a {
			t.Errorf("run 5: %s is %q, want %q", k, got[k], a)
		}
	}
	for _, c := range doc.Changes {
		if c.Key == "SUP-0002" {
			if c.UUID != "3f1c0a52-7b0e-4c55-9e0e-000000000002" || c.Fields["phone_1"] != [2]string{"+33478421020", "+33478429999"} {
				t.Errorf("SUP-0002 change: %+v", c)
			}
		}
	}

	// Night 3: the same content under a new name: nothing is emitted.
	e.dropFile("scenario/night2.csv", "suppliers-2026-11-25.csv")
	out = e.mustRun(ExitOK, "sync")
	if !strings.Contains(out, "created 0, updated 0, deleted 0; unchanged 7") {
		t.Errorf("night 3 output:\n%s", out)
	}
	if files := e.outputs("000006"); len(files) != 0 {
		t.Errorf("an unchanged night wrote %v", files)
	}

	runs := e.history()
	var statuses []string
	for _, r := range runs {
		statuses = append(statuses, r.Kind+":"+r.Status)
	}
	if got, want := strings.Join(statuses, " "), "sync:ok sync:ok dry_run:dry_run reconcile:ok sync:ok sync:ok"; got != want {
		t.Errorf("history %s, want %s", got, want)
	}
}
