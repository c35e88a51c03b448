package csvfile

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/apply/*/want")

// TestApplyGolden runs every case of testdata/apply: case.json is the plan
// and the sink's options, want/ holds the files Apply must write, compared
// byte for byte (go test -update rewrites them).
func TestApplyGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/apply/*/case.json")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, path := range cases {
		dir := filepath.Dir(path)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			gc, plan := loadCase(t, path)
			cfg := Config{Dir: filepath.Join(t.TempDir(), "outbox"), MaxRows: gc.MaxRows, BOM: gc.BOM}
			if gc.HeaderFrom != "" {
				cfg.HeaderFrom, _ = filepath.Abs(filepath.Join("testdata/headers", gc.HeaderFrom))
			}
			s := openSink(t, cfg)
			res, err := apply(t, s, 42, plan)
			if gc.Error != "" {
				if err == nil || !strings.Contains(err.Error(), gc.Error) {
					t.Fatalf("Apply error = %v, want one containing %q", err, gc.Error)
				}
				if got := listDir(t, cfg.Dir); len(got) != 0 {
					t.Fatalf("failed Apply left files: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			got := listDir(t, cfg.Dir)
			var resNames []string
			for _, f := range res.Files {
				if filepath.Dir(f) != cfg.Dir {
					t.Errorf("result file %s is not in the outbox", f)
				}
				resNames = append(resNames, filepath.Base(f))
			}
			if !reflect.DeepEqual(sortedCopy(resNames), got) {
				t.Errorf("ApplyResult.Files %v, outbox holds %v", resNames, got)
			}
			wantDir := filepath.Join(dir, "want")
			if *update {
				if err := os.RemoveAll(wantDir); err != nil {
					t.Fatal(err)
				}
				for _, name := range got {
					b, err := os.ReadFile(filepath.Join(cfg.Dir, name))
					if err != nil {
						t.Fatal(err)
					}
					writeFile(t, filepath.Join(wantDir, name), string(b))
				}
				return
			}
			want := listDir(t, wantDir)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("files %v, want %v", got, want)
			}
			for _, name := range want {
				g, _ := os.ReadFile(filepath.Join(cfg.Dir, name))
				w, _ := os.ReadFile(filepath.Join(wantDir, name))
				if !bytes.Equal(g, w) {
					t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, g, w)
				}
			}
		})
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// TestApplyFileShape checks what the golden files cannot: modes, that every
// row has as many fields as the header, and that import files are capped.
func TestApplyFileShape(t *testing.T) {
	dir := t.TempDir()
	s := openSink(t, Config{Dir: dir, MaxRows: 3})
	p := creates(7)
	p.changes = append(p.changes, connector.Change{Action: connector.ActionDelete, Key: "gone", UUID: "u-1", Contact: contact("Gone", "1"), Reason: "gone from source"})
	p.rejected = []connector.Rejection{{Key: "bad", Origin: "drop.csv:3", Reason: "no display name"}}
	res, err := apply(t, s, 7, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"suppliers-run000007-import-001.csv", "suppliers-run000007-import-002.csv", "suppliers-run000007-import-003.csv",
		"suppliers-run000007-delete.csv", "suppliers-run000007-rejected.csv",
	}
	var names []string
	for _, f := range res.Files {
		names = append(names, filepath.Base(f))
	}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
	rows := 0
	for _, f := range res.Files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, want 0640", f, fi.Mode().Perm())
		}
		// encoding/csv's reader refuses a row whose field count differs
		// from the header's (FieldsPerRecord 0).
		b, _ := os.ReadFile(f)
		all, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !bytes.HasSuffix(b, []byte("\r\n")) || bytes.Count(b, []byte("\r\n")) != len(all) {
			t.Errorf("%s: rows are not each ended by CRLF", f)
		}
		if !strings.Contains(f, "import") {
			continue
		}
		if len(all[0]) != 28 || len(all) > 4 {
			t.Errorf("%s: %d columns, %d rows; want 28 columns and at most 1+3 rows", f, len(all[0]), len(all))
		}
		rows += len(all) - 1
	}
	if rows != 7 {
		t.Errorf("import files hold %d rows, want 7", rows)
	}
}

// TestApplyAtomic makes Apply fail at various points and checks that no
// output of the run is left behind, and that files it does not own stay.
func TestApplyAtomic(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) // before Apply
		plan    func(t *testing.T, dir string) *slicePlan
		maxRows int // default 2
		wantErr string
		keep    []string // files in dir before Apply that must remain
	}{
		{
			name:    "outbox is a file",
			setup:   func(t *testing.T, dir string) { writeFile(t, dir, "x") },
			plan:    func(*testing.T, string) *slicePlan { return creates(3) },
			wantErr: "outbox",
		},
		{
			name: "plan fails after the first file is committed",
			plan: func(t *testing.T, dir string) *slicePlan {
				p := creates(5)
				p.hook = func(i int) error {
					if i == 3 {
						// The rollback must remove a file already under its final name.
						if _, err := os.Stat(filepath.Join(dir, "suppliers-run000042-import-001.csv")); err != nil {
							return fmt.Errorf("first import file not committed yet: %w", err)
						}
						return errors.New("store went away")
					}
					return nil
				}
				return p
			},
			wantErr: "store went away",
		},
		{
			name: "rejections fail after imports and deletes are written",
			plan: func(t *testing.T, dir string) *slicePlan {
				p := creates(2)
				p.changes = append(p.changes, connector.Change{Action: connector.ActionDelete, Key: "k", UUID: "u", Contact: contact("D", "1")})
				p.rejected = []connector.Rejection{{Key: "r1", Reason: "x"}, {Key: "r2", Reason: "y"}}
				p.hook = func(i int) error {
					if i == 4 {
						if n := len(listDir(t, dir)); n != 3 {
							return fmt.Errorf("%d files before the failure, want a committed import and open delete and rejected files", n)
						}
						return errors.New("rejections unreadable")
					}
					return nil
				}
				return p
			},
			wantErr: "rejections unreadable",
		},
		{
			name: "a final name is taken",
			setup: func(t *testing.T, dir string) {
				if err := os.MkdirAll(filepath.Join(dir, "suppliers-run000042-delete.csv"), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "other.csv"), "kept")
			},
			plan: func(*testing.T, string) *slicePlan {
				p := creates(4)
				p.changes = append(p.changes, connector.Change{Action: connector.ActionDelete, Key: "k", UUID: "u", Contact: contact("D", "1")})
				return p
			},
			wantErr: "file already exists",
			keep:    []string{"other.csv", "suppliers-run000042-delete.csv"},
		},
		{
			name:    "context cancelled midway",
			maxRows: 1000,
			plan: func(_ *testing.T, dir string) *slicePlan {
				p := creates(3000)
				p.hook = func(i int) error {
					if i == 1500 {
						cancelRun()
					}
					return nil
				}
				return p
			},
			wantErr: "context canceled",
		},
		{
			name:    "update without a UUID",
			plan:    func(*testing.T, string) *slicePlan { return updatePlan("") },
			wantErr: "has no contact UUID",
		},
		{
			name: "read-only outbox",
			setup: func(t *testing.T, dir string) {
				if os.Geteuid() == 0 {
					t.Skip("root writes into read-only folders")
				}
				if err := os.MkdirAll(dir, 0o500); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, 0o500); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
			},
			plan:    func(*testing.T, string) *slicePlan { return creates(1) },
			wantErr: "permission denied",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "outbox")
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			maxRows := tt.maxRows
			if maxRows == 0 {
				maxRows = 2
			}
			s := openSink(t, Config{Dir: dir, MaxRows: maxRows})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cancelRun = cancel
			res, err := s.Apply(ctx, runInfo(42), tt.plan(t, dir), nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Apply error = %v, want %q", err, tt.wantErr)
			}
			if len(res.Files) != 0 {
				t.Errorf("failed Apply reported files %v", res.Files)
			}
			if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
				if got := listDir(t, dir); !reflect.DeepEqual(got, tt.keep) {
					t.Errorf("outbox holds %v after the failure, want %v", got, tt.keep)
				}
			}
		})
	}
}

// cancelRun cancels the context of the Apply under test in TestApplyAtomic.
var cancelRun context.CancelFunc

func updatePlan(uuid string) *slicePlan {
	return &slicePlan{changes: []connector.Change{{Action: connector.ActionUpdate, Key: "k", UUID: uuid, Contact: contact("U", "+33100000000")}}}
}

func TestRemoveRunFiles(t *testing.T) {
	dir := t.TempDir()
	mine := []string{
		"suppliers-run000042-import-001.csv",
		"suppliers-run000042-import-012.csv",
		"suppliers-run000042-delete.csv",
		"suppliers-run000042-rejected.csv",
		".suppliers-run000042-import-002.csv.tmp12345",
		".suppliers-run000042-rejected.csv.tmp9",
	}
	others := []string{
		"suppliers-run000043-import-001.csv",  // another run
		"suppliers-run0000420-import-001.csv", // another run, same digits
		"acme-run000042-import-001.csv",       // another job
		"suppliers-run000042-import-001.csv.bak",
		"suppliers-run000042-import-1.csv", // not a name this package writes
		"suppliers-run000042-notes.txt",
		".suppliers-run000042-import-001.csv", // dot file without the temp mark
		"suppliers-run000042-x-run000042-delete.csv",
	}
	for _, n := range append(append([]string(nil), mine...), others...) {
		writeFile(t, filepath.Join(dir, n), "x")
	}
	// A job whose name starts like another run's prefix.
	writeFile(t, filepath.Join(dir, "suppliers-run000042-import-run000001-delete.csv"), "x")
	others = append(others, "suppliers-run000042-import-run000001-delete.csv")

	removed, err := RemoveRunFiles(dir, "suppliers", 42)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range removed {
		got = append(got, filepath.Base(p))
	}
	if !reflect.DeepEqual(sortedCopy(got), sortedCopy(mine)) {
		t.Errorf("removed %v, want %v", got, mine)
	}
	if left := listDir(t, dir); !reflect.DeepEqual(left, sortedCopy(others)) {
		t.Errorf("left %v, want %v", left, others)
	}

	t.Run("missing dir", func(t *testing.T) {
		removed, err := RemoveRunFiles(filepath.Join(dir, "nope"), "suppliers", 42)
		if err != nil || len(removed) != 0 {
			t.Errorf("got %v, %v", removed, err)
		}
	})
	t.Run("bad job", func(t *testing.T) {
		if _, err := RemoveRunFiles(dir, "../x", 42); err == nil {
			t.Error("no error for a job name with a slash")
		}
	})
	t.Run("after an applied run", func(t *testing.T) {
		out := t.TempDir()
		s := openSink(t, Config{Dir: out, MaxRows: 2})
		res, err := apply(t, s, 9, creates(5))
		if err != nil {
			t.Fatal(err)
		}
		removed, err := s.RemoveOutput("suppliers", 9)
		if err != nil || !reflect.DeepEqual(sortedCopy(removed), sortedCopy(res.Files)) {
			t.Errorf("removed %v (%v), want %v", removed, err, res.Files)
		}
	})
}

func TestValidate(t *testing.T) {
	base := t.TempDir()
	writeFile(t, filepath.Join(base, "tpl.csv"), "Display Name,First Name\r\n")
	writeFile(t, filepath.Join(base, "noname.csv"), "Contact UUID,First Name\n")
	writeFile(t, filepath.Join(base, "dup.csv"), "Display Name,display name \n")
	tests := []struct {
		name     string
		cfg      Config
		want     []string // problems, "path: message" prefixes
		wantDir  string
		wantRows int
	}{
		{name: "defaults", cfg: Config{Dir: "outbox"}, wantDir: filepath.Join(base, "outbox"), wantRows: 10000},
		{name: "absolute dir and header", cfg: Config{Dir: "/var/out", MaxRows: 1, HeaderFrom: "tpl.csv"}, wantDir: "/var/out", wantRows: 1},
		{name: "no dir", cfg: Config{}, want: []string{"sink.csv.dir: must be set"}, wantRows: 10000},
		{name: "max_rows too big", cfg: Config{Dir: "o", MaxRows: 10001}, want: []string{"sink.csv.max_rows: must be between 1 and 10000"}},
		{name: "every problem", cfg: Config{MaxRows: -1, HeaderFrom: "missing.csv"}, want: []string{
			"sink.csv.dir: must be set",
			"sink.csv.max_rows: must be between",
			"sink.csv.header_from: csvfile: header_from: open " + filepath.Join(base, "missing.csv"),
		}},
		{name: "header without display name", cfg: Config{Dir: "o", HeaderFrom: "noname.csv"}, want: []string{
			`sink.csv.header_from: csvfile: header_from "` + filepath.Join(base, "noname.csv") + `" line 1: header has no "Display Name" column`,
		}},
		{name: "duplicate column", cfg: Config{Dir: "o", HeaderFrom: "dup.csv"}, want: []string{
			`line 1: columns 1 and 2 are both "display name"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := connector.NewValidator(base)
			cfg := tt.cfg
			cfg.Validate(v.At("sink").At("csv"))
			var problems connector.Problems
			if err := v.Err(); err != nil {
				problems = err.(connector.Problems)
			}
			if len(problems) != len(tt.want) {
				t.Fatalf("problems:\n%v\nwant %d: %q", problems, len(tt.want), tt.want)
			}
			for i, p := range problems {
				if !strings.Contains(p.String(), tt.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, p, tt.want[i])
				}
			}
			if tt.wantDir != "" && cfg.Dir != tt.wantDir {
				t.Errorf("dir = %q, want %q", cfg.Dir, tt.wantDir)
			}
			if tt.wantRows != 0 && cfg.MaxRows != tt.wantRows {
				t.Errorf("max_rows = %d, want %d", cfg.MaxRows, tt.wantRows)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	base := t.TempDir()
	file := writeFile(t, filepath.Join(base, "file"), "x")
	tpl := writeFile(t, filepath.Join(base, "tpl.csv"), "Display Name,Phone Number 1\n")
	tests := []struct {
		name    string
		cfg     Config
		want    string
		wantErr string
	}{
		{name: "existing outbox", cfg: Config{Dir: base}, want: "csv outbox " + base + " writable"},
		{name: "outbox to create", cfg: Config{Dir: filepath.Join(base, "a", "b")}, want: "can be created in " + base},
		{name: "outbox under a file", cfg: Config{Dir: filepath.Join(file, "x")}, wantErr: "is not a folder"},
		{name: "header_from", cfg: Config{Dir: base, HeaderFrom: tpl}, want: "2 columns (no Contact UUID: creates only)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openSink(t, tt.cfg)
			got, err := s.Check(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Check = %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(got, tt.want) {
				t.Fatalf("Check = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(base, "a")); err == nil {
		t.Error("Check created the outbox")
	}
	if got := listDir(t, base); !reflect.DeepEqual(got, []string{"file", "tpl.csv"}) {
		t.Errorf("Check left %v", got)
	}
	t.Run("header_from removed after Open", func(t *testing.T) {
		s := openSink(t, Config{Dir: base, HeaderFrom: tpl})
		if err := os.Remove(tpl); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "tpl.csv") {
			t.Errorf("Check error %v, want one naming tpl.csv", err)
		}
	})
}

func TestNeutralise(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"=HYPERLINK(\"x\")": "'=HYPERLINK(\"x\")",
		"+33 1 23":          "'+33 1 23",
		"-2+3":              "'-2+3",
		"@SUM(A1)":          "'@SUM(A1)",
		"\tx":               "'\tx",
		"\rx":               "'\rx",
		"a=b":               "a=b",
		"Éric":              "Éric",
	} {
		if got := neutralise(in); got != want {
			t.Errorf("neutralise(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkApply writes 100,000 creates: ten full import files.
func BenchmarkApply(b *testing.B) {
	dir := b.TempDir()
	s := openSink(b, Config{Dir: dir})
	p := creates(100000)
	b.ReportAllocs()
	var id int64
	for b.Loop() {
		id++
		res, err := apply(b, s, id, p)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Files) != 10 {
			b.Fatalf("%d files", len(res.Files))
		}
		b.StopTimer()
		if _, err := RemoveRunFiles(dir, "suppliers", id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
