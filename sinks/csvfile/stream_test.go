package csvfile

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

// streamApply writes p's first n changes (creates) through a stream, then
// the rest through the stream's Apply, as the engine does.
func streamApply(ctx context.Context, s *Sink, run connector.RunInfo, p *slicePlan, n int) (connector.ApplyResult, error) {
	out, err := s.OpenStream(ctx, run)
	if err != nil {
		return connector.ApplyResult{}, err
	}
	for i := range n {
		c := p.changes[i]
		if err := out.Create(&c); err != nil {
			out.Abort()
			return connector.ApplyResult{}, err
		}
	}
	rest := &slicePlan{changes: p.changes[n:], rejected: p.rejected, hook: p.hook}
	return out.Apply(ctx, rest, nil)
}

// leadingCreates is how many changes of p are creates before anything else.
func leadingCreates(p *slicePlan) int {
	n := 0
	for n < len(p.changes) && p.changes[n].Action == connector.ActionCreate {
		n++
	}
	return n
}

// outbox reads every file of dir.
func outbox(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, name := range listDir(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	return files
}

// TestStreamMatchesApply writes the same plans with and without a stream,
// streaming every possible number of leading creates, and wants the same
// files, the same result and the same log lines.
func TestStreamMatchesApply(t *testing.T) {
	type tcase struct {
		name string
		cfg  Config
		plan *slicePlan
	}
	var tests []tcase
	cases, err := filepath.Glob("testdata/apply/*/case.json")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, path := range cases {
		gc, plan := loadCase(t, path)
		if gc.Error != "" {
			continue
		}
		cfg := Config{MaxRows: gc.MaxRows, BOM: gc.BOM}
		if gc.HeaderFrom != "" {
			cfg.HeaderFrom, _ = filepath.Abs(filepath.Join("testdata/headers", gc.HeaderFrom))
		}
		tests = append(tests, tcase{"golden " + filepath.Base(filepath.Dir(path)), cfg, plan})
	}
	mixed := creates(8)
	mixed.changes = append(mixed.changes,
		connector.Change{Action: connector.ActionCreate, Key: "late", Contact: contact("Late", "+33100000009")},
		connector.Change{Action: connector.ActionUpdate, Key: "u", UUID: "uuid-u", Contact: contact("U", "+33100000010")},
		connector.Change{Action: connector.ActionDelete, Key: "d", UUID: "uuid-d", Contact: contact("D", "+33100000011"), Reason: "gone"})
	mixed.rejected = []connector.Rejection{{Key: "r", Origin: "drop.csv:4", Reason: "bad"}}
	tests = append(tests,
		tcase{"creates over full files", Config{MaxRows: 3}, creates(7)},
		tcase{"creates filling their files exactly", Config{MaxRows: 3, BOM: true}, creates(6)},
		// More full files than the queue of the goroutine that syncs them.
		tcase{"more full files than the sync queue", Config{MaxRows: 1}, creates(20)},
		tcase{"creates, updates, deletes, rejections", Config{MaxRows: 3}, mixed},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// emit writes the plan into a new outbox, streaming its first n
			// creates (n < 0: through Apply alone), and returns the files,
			// the result's file names and the log.
			emit := func(n int) (map[string]string, []string, string, error) {
				var logs bytes.Buffer
				cfg := tt.cfg
				cfg.Dir = filepath.Join(t.TempDir(), "outbox")
				s := openSink(t, cfg)
				run := runInfo(42)
				run.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTimeAndDir(cfg.Dir)}))
				var res connector.ApplyResult
				var err error
				if n < 0 {
					res, err = s.Apply(context.Background(), run, tt.plan, nil)
				} else {
					res, err = streamApply(context.Background(), s, run, tt.plan, n)
				}
				return outbox(t, cfg.Dir), bases(res.Files), logs.String(), err
			}
			wantFiles, wantRes, wantLog, err := emit(-1)
			if err != nil {
				t.Fatal(err)
			}
			for n := range leadingCreates(tt.plan) + 1 {
				files, res, log, err := emit(n)
				if err != nil {
					t.Fatalf("%d streamed: %v", n, err)
				}
				if !reflect.DeepEqual(files, wantFiles) {
					t.Errorf("%d streamed: files\n%q\nwant\n%q", n, files, wantFiles)
				}
				if !reflect.DeepEqual(res, wantRes) {
					t.Errorf("%d streamed: ApplyResult.Files %v, want %v", n, res, wantRes)
				}
				if log != wantLog {
					t.Errorf("%d streamed: log\n%s\nwant\n%s", n, log, wantLog)
				}
			}
		})
	}
}

func bases(paths []string) []string {
	var b []string
	for _, p := range paths {
		b = append(b, filepath.Base(p))
	}
	return b
}

// dropTimeAndDir keeps log lines comparable between two outboxes.
func dropTimeAndDir(dir string) func([]string, slog.Attr) slog.Attr {
	return func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if a.Value.Kind() == slog.KindString {
			a.Value = slog.StringValue(strings.ReplaceAll(a.Value.String(), dir, "OUTBOX"))
		}
		return a
	}
}

// TestStreamFailures makes a streamed emission fail, or be aborted, at
// every stage, and wants no file of the run left, nor an outbox that the
// stream created for nothing.
func TestStreamFailures(t *testing.T) {
	noUUID, _ := filepath.Abs("testdata/headers/template-27.csv")
	tests := []struct {
		name     string
		cfg      Config
		setup    func(t *testing.T, dir string)
		plan     *slicePlan
		streamed int
		cancel   bool // cancel the context before Apply
		abort    bool // Abort instead of Apply
		wantErr  string
		keep     []string
		// dirGone: the outbox (and the folder above it), created by the
		// stream, is removed.
		dirGone bool
	}{
		{name: "aborted after full files", plan: creates(7), streamed: 7, abort: true, dirGone: true},
		{name: "aborted before any create", plan: creates(7), streamed: 0, abort: true, dirGone: true},
		{name: "aborted with more full files than the sync queue", cfg: Config{MaxRows: 1}, plan: creates(40), streamed: 40, abort: true, dirGone: true},
		{
			name: "a final name taken among many full files", cfg: Config{MaxRows: 1}, plan: creates(40), streamed: 40, wantErr: "file already exists",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "suppliers-run000042-import-030.csv"), "not ours")
			},
			keep: []string{"suppliers-run000042-import-030.csv"},
		},
		{
			name: "aborted in an outbox that existed", plan: creates(7), streamed: 5, abort: true,
			setup: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "other.csv"), "kept") },
			keep:  []string{"other.csv"},
		},
		{
			name: "updates without a UUID column", cfg: Config{HeaderFrom: noUUID},
			plan: func() *slicePlan {
				p := creates(5)
				p.changes = append(p.changes, updatePlan("uuid-1").changes...)
				return p
			}(),
			streamed: 5, wantErr: ErrNoUUIDColumn.Error(), dirGone: true,
		},
		{
			name: "a final name is taken", plan: creates(7), streamed: 7, wantErr: "file already exists",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "suppliers-run000042-import-002.csv"), "not ours")
			},
			keep: []string{"suppliers-run000042-import-002.csv"},
		},
		{name: "cancelled before Apply", plan: creates(7), streamed: 7, cancel: true, wantErr: "context canceled", dirGone: true},
		{
			name: "outbox is a file", plan: creates(3), streamed: 3, wantErr: "outbox",
			setup: func(t *testing.T, dir string) { writeFile(t, dir, "x") },
		},
		{
			name: "update without a UUID after streamed creates", plan: func() *slicePlan {
				p := creates(4)
				p.changes = append(p.changes, updatePlan("").changes...)
				return p
			}(),
			streamed: 4, wantErr: "has no contact UUID",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := filepath.Join(t.TempDir(), "above")
			dir := filepath.Join(top, "outbox")
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			cfg := tt.cfg
			cfg.Dir = dir
			if cfg.MaxRows == 0 {
				cfg.MaxRows = 2
			}
			s := openSink(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out, err := s.OpenStream(ctx, runInfo(42))
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.streamed {
				c := tt.plan.changes[i]
				if err = out.Create(&c); err != nil {
					break
				}
			}
			var res connector.ApplyResult
			switch {
			case tt.abort:
				if err != nil {
					t.Fatal(err)
				}
				out.Abort()
			default:
				if tt.cancel {
					cancel()
				}
				// A stream whose Create failed is still applied here, to
				// check that it never publishes half of its files.
				res, err = out.Apply(ctx, &slicePlan{changes: tt.plan.changes[tt.streamed:], rejected: tt.plan.rejected}, nil)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Apply error = %v, want %q", err, tt.wantErr)
				}
				out.Abort() // harmless after Apply
			}
			if len(res.Files) != 0 {
				t.Errorf("failed Apply reported files %v", res.Files)
			}
			if tt.dirGone {
				if _, err := os.Stat(top); !os.IsNotExist(err) {
					t.Errorf("the folders the stream created remain: %v", listDir(t, top))
				}
				return
			}
			if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
				if got := listDir(t, dir); !reflect.DeepEqual(got, tt.keep) {
					t.Errorf("outbox holds %v, want %v", got, tt.keep)
				}
			}
		})
	}
}
