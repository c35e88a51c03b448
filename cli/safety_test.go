package cli

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

const safetyConfig = `state: state.db
listen: ""
audit: {keep_days: 400}
jobs:
  - name: crm
    source:
      csv: {dir: drop, key: id}
    mapping:
      display_name: "{{.name}}"
      phones: [{value: "{{.phone}}", type: work}]
    sink:
      csv: {dir: outbox}
    safety:
%SAFETY%
`

// safetyEnv is an installation whose drop files are generated: n records,
// ids 1..n.
func safetyEnv(t *testing.T, safety string) *env {
	t.Helper()
	e := newEnv(t, "10")
	cfg := strings.ReplaceAll(safetyConfig, "%SAFETY%", safety)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// dropRecords writes a drop holding the records with the given ids.
func (e *env) dropRecords(ids ...int) {
	e.t.Helper()
	var b strings.Builder
	b.WriteString("id,name,phone\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%d,Supplier %d,+33 1 23 45 %02d %02d\n", id, id, id/100, id%100)
	}
	e.writeDrop(b.String())
}

func (e *env) writeDrop(content string) {
	e.t.Helper()
	e.dropAs(fmt.Sprintf("drop-%d.csv", e.mtime.Add(time.Hour).Unix()), []byte(content))
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestDeletionGuardEdges(t *testing.T) {
	tests := []struct {
		name   string
		safety string
		keep   []int // ids of the second drop (the first holds 1..10)
		want   int
	}{
		{"max_deletes exactly at", "      max_deletes: 2\n      max_delete_percent: 100", seq(1, 8), ExitOK},
		{"max_deletes one over", "      max_deletes: 2\n      max_delete_percent: 100", seq(1, 7), ExitBlocked},
		{"percent exactly at", "      max_delete_percent: 20", seq(1, 8), ExitOK},
		{"percent one over", "      max_delete_percent: 20", seq(1, 7), ExitBlocked},
		{"default 10 percent", "      min_source_records: 1", seq(1, 9), ExitOK},
		{"default 10 percent, one over", "      min_source_records: 1", seq(1, 8), ExitBlocked},
		{"min_source_records exactly at", "      min_source_records: 8\n      max_delete_percent: 100", seq(1, 8), ExitOK},
		{"min_source_records one under", "      min_source_records: 8\n      max_delete_percent: 100", seq(1, 7), ExitBlocked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := safetyEnv(t, tt.safety)
			e.dropRecords(seq(1, 10)...)
			e.mustRun(ExitOK, "sync")
			e.dropRecords(tt.keep...)
			out := e.mustRun(tt.want, "sync")
			runs := e.history()
			if tt.want == ExitBlocked {
				if runs[0].Status != "blocked" || runs[0].Reason == "" {
					t.Errorf("run recorded as %q (%q), want blocked with a reason", runs[0].Status, runs[0].Reason)
				}
				if files := e.outputs("000002"); len(files) != 0 {
					t.Errorf("a blocked run wrote %v", files)
				}
				if !strings.Contains(out, "approve --job crm") {
					t.Errorf("blocked output does not say how to approve:\n%s", out)
				}
				return
			}
			if want := 10 - len(tt.keep); runs[0].Deleted != want {
				t.Errorf("deleted %d, want %d", runs[0].Deleted, want)
			}
		})
	}
}

func TestEmptySourceNeverDeletes(t *testing.T) {
	for _, tt := range []struct{ name, content string }{
		{"header only", "id,name,phone\n"},
		{"empty file", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := safetyEnv(t, "      max_deletes: 500")
			e.dropRecords(seq(1, 3)...)
			e.mustRun(ExitOK, "sync")
			e.writeDrop(tt.content)
			code, out, errs := e.run("sync")
			if code != ExitBlocked && code != ExitFailed {
				t.Fatalf("exit %d, want blocked (3) or failed (1)\n%s%s", code, out, errs)
			}
			if files := e.outputs("000002"); len(files) != 0 {
				t.Errorf("wrote %v", files)
			}
			// The state still holds the three contacts: the next good drop
			// changes nothing.
			e.dropRecords(seq(1, 3)...)
			out = e.mustRun(ExitOK, "sync")
			if !strings.Contains(out, "unchanged 3") {
				t.Errorf("after recovery:\n%s", out)
			}
		})
	}
}

func TestBlockedThenApprove(t *testing.T) {
	e := safetyEnv(t, "      max_deletes: 1\n      max_delete_percent: 100")
	e.dropRecords(seq(1, 8)...)
	e.mustRun(ExitOK, "sync")
	e.dropRecords(1, 2, 3, 4, 5)
	e.mustRun(ExitBlocked, "sync")
	// Still blocked on the next run: the cursor did not move.
	e.mustRun(ExitBlocked, "sync")
	// A plan shows it would be blocked, and changes nothing.
	if out := e.mustRun(ExitOK, "plan"); !strings.Contains(out, "would be blocked") {
		t.Errorf("plan output:\n%s", out)
	}
	e.mustRun(ExitOK, "approve", "--job", "crm")
	e.mustRun(ExitOK, "sync")
	runs := e.history()
	if runs[0].Status != "ok" || runs[0].Deleted != 3 {
		t.Fatalf("approved run: %+v", runs[0])
	}
	files := e.outputs(fmt.Sprintf("%06d", runs[0].ID))
	if len(files) != 1 || !strings.HasSuffix(files[0], "-delete.csv") {
		t.Errorf("approved run wrote %v, want one delete file", files)
	}
	// The approval was for one run only.
	e.dropRecords(1, 2, 3)
	e.mustRun(ExitBlocked, "sync")
	// --allow-deletes lets one run through without an approval.
	e.mustRun(ExitOK, "sync", "--allow-deletes")
}

func TestAllowSwitchesHoldChanges(t *testing.T) {
	e := safetyEnv(t, "      max_delete_percent: 100\n      allow: [create]")
	e.dropRecords(1, 2, 3)
	e.mustRun(ExitOK, "sync")
	// Record 1 changes and record 3 leaves: both held back.
	e.writeDrop("id,name,phone\n1,Renamed,+33 1 23 45 00 01\n2,Supplier 2,+33 1 23 45 00 02\n")
	out := e.mustRun(ExitOK, "sync")
	if !strings.Contains(out, "updated 0, deleted 0") || !strings.Contains(out, "waiting 2") {
		t.Errorf("held changes:\n%s", out)
	}
	runs := e.history()
	if files := e.outputs(fmt.Sprintf("%06d", runs[0].ID)); len(files) != 0 {
		t.Errorf("held changes wrote %v", files)
	}
}

func TestFailedRunChangesNothing(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(e *env)
		why    string
	}{
		{"bad drop file midway", func(e *env) {
			e.writeDrop("id,name,phone\n1,Changed,+33 1 23 45 00 01\n2,Two,+33 1 23 45 00 02\n3,\"unterminated,+33 1\n")
		}, "line"},
		{"outbox is not a folder", func(e *env) {
			e.dropRecords(1, 2, 3, 4)
			_ = os.RemoveAll(e.outbox)
			if err := os.WriteFile(e.outbox, []byte("not a folder"), 0o644); err != nil {
				e.t.Fatal(err)
			}
		}, "outbox"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := safetyEnv(t, "      max_delete_percent: 100")
			e.dropRecords(1, 2, 3)
			e.mustRun(ExitOK, "sync")
			tt.break_(e)
			code, out, errs := e.run("sync")
			if code != ExitFailed {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errs)
			}
			if !strings.Contains(out+errs, tt.why) {
				t.Errorf("error does not mention %q:\n%s%s", tt.why, out, errs)
			}
			runs := e.history()
			if runs[0].Status != "failed" || runs[0].Reason == "" {
				t.Errorf("run recorded %+v, want failed with a reason", runs[0])
			}
			// Nothing else changed: the contacts are as after run 1.
			doc := e.show(fmt.Sprint(runs[0].ID))
			if len(doc.Changes) != 0 {
				t.Errorf("failed run recorded changes: %+v", doc.Changes)
			}
			_ = os.Remove(e.outbox)
			e.dropRecords(1, 2, 3)
			if out := e.mustRun(ExitOK, "sync"); !strings.Contains(out, "unchanged 3") {
				t.Errorf("after the failure:\n%s", out)
			}
		})
	}
}

func TestInvalidConfigListsEveryProblem(t *testing.T) {
	e := newEnv(t, "10")
	bad := `state: state.db
log: {format: xml}
bogus: 1
jobs:
  - name: Bad Name
    source:
      csv: {dir: drop, key: id, mode: sometimes}
      ldap: {url: ldap://x}
    mapping:
      display_name: "{{.name"
      phones:
        - {value: "{{.phone}}", type: work}
        - {value: "{{.fax}}", type: fax2}
    sink:
      csv: {dir: outbox, max_rows: 0, colour: blue}
    safety: {max_delete_percent: 120, allow: [create, purge]}
`
	if err := os.WriteFile(e.config, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := e.run("sync")
	if code != ExitUsage {
		t.Fatalf("exit %d, want 2\n%s", code, errs)
	}
	for _, want := range []string{
		"log.format:",
		"bogus: unknown key",
		"jobs[0].name:",
		"jobs[0].source: must hold exactly one of",
		"jobs[0].mapping.display_name:",
		`jobs[0].mapping.phones[1].type: unknown phone type "fax2"`,
		"jobs[0].sink.csv.colour: unknown key",
		"jobs[0].safety.max_delete_percent:",
		`jobs[0].safety.allow[1]: unknown operation "purge"`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}
