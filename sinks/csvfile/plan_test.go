package csvfile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

// slicePlan is a connector.Plan over slices, standing in for the engine's
// plan. hook, when set, runs before change i (0-based) or before rejection
// len(changes)+i, and may fail the iteration there, as a real plan does when
// its store or context fails.
type slicePlan struct {
	changes  []connector.Change
	rejected []connector.Rejection
	hook     func(i int) error
}

func (p *slicePlan) Changes(fn func(*connector.Change) error) error {
	var c connector.Change // reused, as the contract allows
	for i := range p.changes {
		if p.hook != nil {
			if err := p.hook(i); err != nil {
				return err
			}
		}
		c = p.changes[i]
		if err := fn(&c); err != nil {
			return err
		}
	}
	return nil
}

func (p *slicePlan) Rejected(fn func(connector.Rejection) error) error {
	for i, r := range p.rejected {
		if p.hook != nil {
			if err := p.hook(len(p.changes) + i); err != nil {
				return err
			}
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (p *slicePlan) Counts() connector.Counts {
	var c connector.Counts
	for _, ch := range p.changes {
		switch ch.Action {
		case connector.ActionCreate:
			c.Created++
		case connector.ActionUpdate:
			c.Updated++
		case connector.ActionDelete:
			c.Deleted++
		}
	}
	c.Rejected = len(p.rejected)
	return c
}

// jsonChange is a change in a golden case file; contacts are objects keyed
// by the fields' audit names, readable in a diff.
type jsonChange struct {
	Action  connector.Action  `json:"action"`
	Key     string            `json:"key"`
	UUID    string            `json:"uuid"`
	Reason  string            `json:"reason"`
	Contact map[string]string `json:"contact"`
}

// goldenCase is testdata/apply/<name>/case.json.
type goldenCase struct {
	MaxRows    int                   `json:"max_rows"`
	HeaderFrom string                `json:"header_from"` // under testdata/headers
	BOM        bool                  `json:"bom"`
	Changes    []jsonChange          `json:"changes"`
	Rejected   []connector.Rejection `json:"rejected"`
	Error      string                `json:"error"` // Apply must fail with this in its message
}

func loadCase(t *testing.T, path string) (*goldenCase, *slicePlan) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var gc goldenCase
	if err := json.Unmarshal(b, &gc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	p := &slicePlan{rejected: gc.Rejected}
	for _, jc := range gc.Changes {
		c := connector.Change{Action: jc.Action, Key: jc.Key, UUID: jc.UUID, Reason: jc.Reason}
		for name, v := range jc.Contact {
			f, ok := connector.FieldByName(name)
			if !ok {
				t.Fatalf("%s: change %s: unknown field %q", path, jc.Key, name)
			}
			c.Contact[f] = v
		}
		p.changes = append(p.changes, c)
	}
	return &gc, p
}

// contact builds a contact with a display name and a work phone.
func contact(name, phone string) connector.Contact {
	var c connector.Contact
	c[connector.DisplayName] = name
	c[connector.Phone1] = phone
	c[connector.Phone1Type] = "work"
	return c
}

// creates is a plan of n creates.
func creates(n int) *slicePlan {
	p := &slicePlan{changes: make([]connector.Change, n)}
	for i := range p.changes {
		p.changes[i] = connector.Change{
			Action:  connector.ActionCreate,
			Key:     fmt.Sprintf("S%06d", i),
			Contact: contact(fmt.Sprintf("Supplier %d, Inc.", i), fmt.Sprintf("+3314%07d", i)),
		}
		p.changes[i].Contact[connector.CompanyName] = "Société Générale d'Équipement"
		p.changes[i].Contact[connector.Email] = fmt.Sprintf("contact%d@supplier.example", i)
	}
	return p
}

func openSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := cfg.open(connector.Env{Job: "suppliers", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

func runInfo(id int64) connector.RunInfo {
	return connector.RunInfo{Job: "suppliers", RunID: id}
}

func apply(t testing.TB, s *Sink, id int64, p connector.Plan) (connector.ApplyResult, error) {
	t.Helper()
	return s.Apply(context.Background(), runInfo(id), p, nil)
}

// listDir returns the names in dir, sorted; a missing dir is empty.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
