package csvdrop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// base is the fake "now" of the folder tests; drop files are dated before it.
var base = time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)

// drop is a file of a test folder: its rows follow a fixed header.
type drop struct {
	name string
	age  time.Duration // mtime = base - age
	keys string        // "A B C": one row per key
}

func writeDrop(t *testing.T, dir string, d drop) {
	t.Helper()
	var b strings.Builder
	b.WriteString("Supplier ID;Name\r\n")
	for _, k := range strings.Fields(d.keys) {
		b.WriteString(k + ";name of " + k + "\r\n")
	}
	if strings.HasPrefix(d.keys, "!") {
		b.Reset()
		b.WriteString(d.keys[1:])
	}
	path := filepath.Join(dir, d.name)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	mt := base.Add(-d.age)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func openTest(t *testing.T, dir, mode string, now *time.Time) *Source {
	t.Helper()
	c := &Config{Dir: dir, Key: "Supplier ID", Mode: mode}
	v := connector.NewValidator("")
	c.Validate(v)
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	s, err := c.Open(connector.Env{Job: "suppliers"})
	if err != nil {
		t.Fatal(err)
	}
	src := s.(*Source)
	src.now = func() time.Time { return *now }
	return src
}

// step is one pull; like the engine, the test stores the returned cursor
// only when commit is set.
type step struct {
	req       connector.PullRequest
	advance   time.Duration // the clock moves before the pull
	add       []drop        // files dropped before the pull
	commit    bool
	keys      string // records handed over, in order
	noChange  bool
	complete  bool
	cursorIs  string // name in the returned cursor ("" for none)
	errPrefix string
}

func TestPull(t *testing.T) {
	h := time.Hour
	tests := []struct {
		name  string
		mode  string
		files []drop
		steps []step
	}{
		{
			name: "snapshot reads the newest unread file and skips older ones",
			mode: ModeSnapshot,
			files: []drop{
				{"crm-1.csv", 3 * h, "A B"}, {"crm-2.csv", 2 * h, "A B C"}, {"crm-3.csv", 1 * h, "B C D"},
				{".crm-4.csv", 0, "X"}, {"crm-5.txt", 0, "X"},
			},
			steps: []step{
				{commit: true, keys: "B C D", complete: true, cursorIs: "crm-3.csv"},
				{commit: true, noChange: true, cursorIs: "crm-3.csv"},
				{add: []drop{{"crm-0.csv", 5 * h, "OLD"}}, noChange: true, cursorIs: "crm-3.csv"},
				{add: []drop{{"crm-6.csv", 30 * time.Minute, "E"}}, commit: true, keys: "E", complete: true, cursorIs: "crm-6.csv"},
			},
		},
		{
			name:  "snapshot: same mtime, the name decides",
			mode:  ModeSnapshot,
			files: []drop{{"b.csv", h, "B"}, {"a.csv", h, "A"}},
			steps: []step{
				{commit: true, keys: "B", complete: true, cursorIs: "b.csv"},
				{noChange: true, cursorIs: "b.csv"},
			},
		},
		{
			name:  "snapshot: a file still growing waits for the next run",
			mode:  ModeSnapshot,
			files: []drop{{"day1.csv", 24 * h, "A"}},
			steps: []step{
				{commit: true, keys: "A", complete: true, cursorIs: "day1.csv"},
				{add: []drop{{"day2.csv", time.Second, "A B"}}, noChange: true, cursorIs: "day1.csv"},
				{advance: 5 * time.Second, commit: true, keys: "A B", complete: true, cursorIs: "day2.csv"},
			},
		},
		{
			name:  "snapshot: full and peek re-read the newest file; peek leaves the cursor",
			mode:  ModeSnapshot,
			files: []drop{{"old.csv", 2 * h, "O"}, {"new.csv", h, "N M"}},
			steps: []step{
				{commit: true, keys: "N M", complete: true, cursorIs: "new.csv"},
				{noChange: true, cursorIs: "new.csv"},
				{req: connector.PullRequest{Full: true}, commit: true, keys: "N M", complete: true, cursorIs: "new.csv"},
				{req: connector.PullRequest{Peek: true}, keys: "N M", complete: true, cursorIs: "new.csv"},
				{req: connector.PullRequest{Peek: true, Limit: 1}, keys: "N", cursorIs: "new.csv"},
			},
		},
		{
			name:  "snapshot: a preview cut short is neither complete nor consumed",
			mode:  ModeSnapshot,
			files: []drop{{"x.csv", h, "A B C"}},
			steps: []step{
				{req: connector.PullRequest{Limit: 2}, commit: true, keys: "A B"},
				{commit: true, keys: "A B C", complete: true, cursorIs: "x.csv"},
			},
		},
		{
			name:  "snapshot: a file rewritten in place with another size is new",
			mode:  ModeSnapshot,
			files: []drop{{"x.csv", h, "A"}},
			steps: []step{
				{commit: true, keys: "A", complete: true, cursorIs: "x.csv"},
				{add: []drop{{"x.csv", h, "A B"}}, commit: true, keys: "A B", complete: true, cursorIs: "x.csv"},
			},
		},
		{
			name:  "no file at all is no change, never an empty source",
			mode:  ModeSnapshot,
			steps: []step{{noChange: true}, {req: connector.PullRequest{Full: true}, noChange: true}},
		},
		{
			name:  "changes mode reads every new file, oldest first",
			mode:  ModeChanges,
			files: []drop{{"c.csv", 1 * h, "C1 A"}, {"a.csv", 3 * h, "A1"}, {"b.csv", 2 * h, "B1 A"}},
			steps: []step{
				{commit: true, keys: "A1 B1 A C1 A", cursorIs: "c.csv"},
				{noChange: true, cursorIs: "c.csv"},
				{add: []drop{{"d.csv", 30 * time.Minute, "D"}, {"e.csv", 20 * time.Minute, "E"}}, commit: true, keys: "D E", cursorIs: "e.csv"},
				{req: connector.PullRequest{Peek: true}, keys: "A1 B1 A C1 A D E", cursorIs: "e.csv"},
				{req: connector.PullRequest{Peek: true, Limit: 3}, keys: "A1 B1 A", cursorIs: "e.csv"},
				{req: connector.PullRequest{Full: true}, commit: true, keys: "A1 B1 A C1 A D E", cursorIs: "e.csv"},
			},
		},
		{
			name:  "changes mode stops at a growing file",
			mode:  ModeChanges,
			files: []drop{{"a.csv", h, "A"}, {"b.csv", time.Second, "B"}},
			steps: []step{
				{commit: true, keys: "A", cursorIs: "a.csv"},
				{advance: time.Minute, commit: true, keys: "B", cursorIs: "b.csv"},
			},
		},
		{
			name:  "a bad file fails the pull with its name and line and consumes nothing",
			mode:  ModeChanges,
			files: []drop{{"a.csv", 2 * h, "A"}, {"b.csv", h, "!Supplier ID;Name\nB;1\nC;2;3\n"}},
			steps: []step{
				{commit: true, errPrefix: "csvdrop: b.csv line 3: 3 fields where the header has 2"},
				{add: []drop{{"b.csv", h, "B C"}}, commit: true, keys: "A B C", cursorIs: "b.csv"},
			},
		},
		{
			name:  "an unreadable cursor fails a normal pull, not a full one",
			mode:  ModeSnapshot,
			files: []drop{{"a.csv", h, "A"}},
			steps: []step{
				{req: connector.PullRequest{Cursor: []byte("garbage")}, errPrefix: "csvdrop: stored cursor is unreadable"},
				{req: connector.PullRequest{Cursor: []byte("garbage"), Full: true}, keys: "A", complete: true, cursorIs: "a.csv"},
			},
		},
		{
			name:  "the folder is missing",
			mode:  ModeSnapshot,
			steps: []step{{req: connector.PullRequest{}, errPrefix: "csvdrop: list drop folder: open "}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				writeDrop(t, dir, f)
			}
			// A folder that matches the pattern is no drop file.
			if err := os.Mkdir(filepath.Join(dir, "archive.csv"), 0o755); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(tt.name, "missing") {
				dir = filepath.Join(dir, "nope")
			}
			now := base
			src := openTest(t, dir, tt.mode, &now)
			var stored []byte
			for i, st := range tt.steps {
				now = now.Add(st.advance)
				for _, f := range st.add {
					writeDrop(t, dir, f)
				}
				req := st.req
				if req.Cursor == nil {
					req.Cursor = stored
				}
				rec := &recorder{}
				res, err := src.Pull(context.Background(), req, rec)
				if st.errPrefix != "" {
					if err == nil || !strings.HasPrefix(err.Error(), st.errPrefix) {
						t.Fatalf("step %d: error %v, want %q", i, err, st.errPrefix)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got := strings.Join(rec.keys, " "); got != st.keys {
					t.Errorf("step %d: records %q, want %q", i, got, st.keys)
				}
				if res.NoChange != st.noChange || res.Complete != st.complete {
					t.Errorf("step %d: NoChange=%v Complete=%v, want %v %v", i, res.NoChange, res.Complete, st.noChange, st.complete)
				}
				if got := cursorName(t, res.Cursor); got != st.cursorIs {
					t.Errorf("step %d: cursor at %q, want %q", i, got, st.cursorIs)
				}
				if st.noChange && res.Identity == "" {
					t.Errorf("step %d: no identity", i)
				}
				if st.commit {
					stored = res.Cursor
				}
			}
		})
	}
}

func cursorName(t *testing.T, b []byte) string {
	t.Helper()
	if b == nil {
		return ""
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("cursor %q: %v", b, err)
	}
	return c.Name
}

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	writeDrop(t, dir, drop{"suppliers-2026-11-24.csv", h(), "A"})
	data, err := os.ReadFile(filepath.Join(dir, "suppliers-2026-11-24.csv"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	now := base
	res, err := openTest(t, dir, ModeSnapshot, &now).Pull(context.Background(), connector.PullRequest{}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	want := "suppliers-2026-11-24.csv sha256:" + hex.EncodeToString(sum[:])
	if res.Identity != want {
		t.Errorf("identity %q, want %q", res.Identity, want)
	}
}

func h() time.Duration { return time.Hour }

// growingEmitter appends to the file being read, as a CRM still writing
// would.
type growingEmitter struct {
	recorder
	path string
	done bool
}

func (g *growingEmitter) Record(r *connector.Record) error {
	if !g.done {
		g.done = true
		f, err := os.OpenFile(g.path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.WriteString("Z;late\r\n"); err != nil {
			return err
		}
	}
	return g.recorder.Record(r)
}

func TestFileChangedWhileRead(t *testing.T) {
	dir := t.TempDir()
	writeDrop(t, dir, drop{"x.csv", h(), "A B"})
	now := base
	src := openTest(t, dir, ModeSnapshot, &now)
	_, err := src.Pull(context.Background(), connector.PullRequest{}, &growingEmitter{path: filepath.Join(dir, "x.csv")})
	if err == nil || !strings.HasPrefix(err.Error(), "csvdrop: x.csv changed while it was read") {
		t.Fatalf("error %v", err)
	}
}

func TestNamesShared(t *testing.T) {
	dir := t.TempDir()
	writeDrop(t, dir, drop{"x.csv", h(), "A B C"})
	now := base
	var names [][]string
	em := &funcEmitter{fn: func(r *connector.Record) { names = append(names, r.Names) }}
	if _, err := openTest(t, dir, ModeSnapshot, &now).Pull(context.Background(), connector.PullRequest{}, em); err != nil {
		t.Fatal(err)
	}
	if len(names) != 3 || !sameSlice(names[0], names[2]) || !slices.Equal(names[0], []string{"supplier id", "name"}) {
		t.Errorf("names %q are not one shared header", names)
	}
}

type funcEmitter struct {
	recorder
	fn func(*connector.Record)
}

func (f *funcEmitter) Record(r *connector.Record) error { f.fn(r); return nil }

type cursorStore struct {
	connector.Store
	cursor []byte
}

func (c *cursorStore) Cursor(context.Context, string) ([]byte, error) { return c.cursor, nil }

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	writeDrop(t, dir, drop{"a.csv", 2 * h(), "A"})
	writeDrop(t, dir, drop{"b.csv", h(), "B"})
	writeDrop(t, dir, drop{"bad.csv", 3 * h(), "!ID;Name\n1;x\n"})
	now := base
	src := openTest(t, dir, ModeSnapshot, &now)

	got, err := src.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := `csv ` + dir + `: 3 file(s) match "*.csv"; newest b.csv (2026-11-24T01:00:00Z, 31 bytes); key column "Supplier ID" found`
	if got != want {
		t.Errorf("check:\n got %s\nwant %s", got, want)
	}

	res, err := src.Pull(context.Background(), connector.PullRequest{}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	src.store = &cursorStore{cursor: res.Cursor}
	if got, _ := src.Check(context.Background()); !strings.Contains(got, "31 bytes, already read)") {
		t.Errorf("check after a read: %s", got)
	}
	src.store = &cursorStore{}
	if got, _ := src.Check(context.Background()); !strings.Contains(got, "31 bytes, unread)") {
		t.Errorf("check before a read: %s", got)
	}

	writeDrop(t, dir, drop{"c.csv", 0, "!ID;Name\n1;x\n"})
	if got, err := src.Check(context.Background()); err == nil || !strings.Contains(got, "still being written") ||
		!strings.HasPrefix(err.Error(), `csvdrop: c.csv line 1: no key column "Supplier ID" in the header (columns: "ID", "Name")`) {
		t.Errorf("check of a bad newest file: %s, %v", got, err)
	}

	src.dir = filepath.Join(dir, "missing")
	if _, err := src.Check(context.Background()); err == nil {
		t.Error("check of a missing folder succeeded")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // every problem, one a line
	}{
		{"defaults", Config{Dir: "drop", Key: "Supplier ID"}, ""},
		{"everything wrong", Config{Pattern: "[", Mode: "full", Delimiter: "|", Encoding: "ebcdic", Settle: "soon"},
			"source.csv.dir: must be set\n" +
				"source.csv.pattern: \"[\" is not a valid file pattern: syntax error in pattern\n" +
				"source.csv.key: must be set\n" +
				"source.csv.mode: must be snapshot or changes, not \"full\"\n" +
				"source.csv.delimiter: must be auto, \",\", \";\" or tab, not \"|\"\n" +
				"source.csv.encoding: must be auto, utf-8, windows-1252, iso-8859-1 or utf-16, not \"ebcdic\"\n" +
				"source.csv.settle: must be a duration such as 2s or 1m, not \"soon\""},
		{"pattern with a folder", Config{Dir: "/d", Key: "k", Pattern: "sub/*.csv"},
			"source.csv.pattern: \"sub/*.csv\" must name files in dir, without a folder"},
		{"explicit values", Config{Dir: "/d", Key: "k", Mode: "changes", Delimiter: "tab", Encoding: "utf-16", Settle: "1m"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := connector.NewValidator("/etc/contactsync")
			c := tt.cfg
			c.Validate(v.At("source").At("csv"))
			got := ""
			if err := v.Err(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.want)
			}
			if tt.want == "" && tt.cfg.Dir == "drop" {
				if c.Dir != "/etc/contactsync/drop" || c.Pattern != "*.csv" || c.Mode != "snapshot" || c.Encoding != "auto" || c.Delimiter != "auto" {
					t.Errorf("defaults not filled in: %+v", c)
				}
			}
		})
	}
	if _, err := (&Config{Key: "k"}).Open(connector.Env{}); err == nil {
		t.Error("Open of an invalid configuration succeeded")
	}
}

// TestIncrementalAnnounced: a "changes" pull after a cursor hands over
// changes alone; a snapshot only when no new file came (it then hands over
// nothing).
func TestIncrementalAnnounced(t *testing.T) {
	now := base
	dir := t.TempDir()
	writeDrop(t, dir, drop{name: "a.csv", age: 2 * time.Hour, keys: "A B"})
	read := func(mode string) []byte {
		res, err := openTest(t, dir, mode, &now).Pull(context.Background(), connector.PullRequest{}, &funcEmitter{fn: func(*connector.Record) {}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Cursor
	}
	cur := read(ModeSnapshot)
	tests := []struct {
		name string
		mode string
		req  connector.PullRequest
		want bool
	}{
		{"changes after a cursor", ModeChanges, connector.PullRequest{Cursor: cur}, true},
		{"changes, first pull", ModeChanges, connector.PullRequest{}, false},
		{"changes, full", ModeChanges, connector.PullRequest{Cursor: cur, Full: true}, false},
		{"changes, peek", ModeChanges, connector.PullRequest{Cursor: cur, Peek: true}, false},
		{"changes, limit", ModeChanges, connector.PullRequest{Cursor: cur, Limit: 3}, false},
		{"snapshot, no new file", ModeSnapshot, connector.PullRequest{Cursor: cur}, true},
		{"snapshot, full", ModeSnapshot, connector.PullRequest{Cursor: cur, Full: true}, false},
		{"snapshot, first pull", ModeSnapshot, connector.PullRequest{}, false},
		{"snapshot, unreadable cursor", ModeSnapshot, connector.PullRequest{Cursor: []byte("{")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := openTest(t, dir, tt.mode, &now).Incremental(tt.req); got != tt.want {
				t.Errorf("Incremental = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("snapshot, a new file", func(t *testing.T) {
		writeDrop(t, dir, drop{name: "b.csv", age: time.Hour, keys: "A"})
		if openTest(t, dir, ModeSnapshot, &now).Incremental(connector.PullRequest{Cursor: cur}) {
			t.Error("a new snapshot announced as changes only")
		}
	})
}
