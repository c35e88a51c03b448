package connector_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sinks/csvfile"
	"github.com/contactsync/contactsync/sources/csvdrop"
	"github.com/contactsync/contactsync/state"
)

// rig is a job over real parts: a CSV drop folder, the Control Hub CSV
// sink and a SQLite state, with a clock the test moves.
type rig struct {
	t      *testing.T
	dir    string
	db     *state.DB
	eng    *connector.Engine
	job    *connector.Job
	now    time.Time
	drops  int
	outbox string
}

func newRig(t *testing.T, mode string, keepDays int) *rig {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	db, err := state.Open(ctx, filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &rig{t: t, dir: dir, db: db, now: time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC), outbox: filepath.Join(dir, "outbox")}
	if err := os.MkdirAll(filepath.Join(dir, "drop"), 0o755); err != nil {
		t.Fatal(err)
	}
	v := connector.NewValidator(dir)
	src := &csvdrop.Config{Dir: "drop", Key: "id", Mode: mode}
	src.Validate(v.At("source"))
	sink := &csvfile.Config{Dir: "outbox"}
	sink.Validate(v.At("sink"))
	m := &connector.MappingConfig{DisplayName: "{{.name}}", Phones: []connector.PhoneMapping{{Value: "{{.phone}}", Type: "work"}}, PhoneRegion: "FR"}
	m.Validate(v.At("mapping"))
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	env := connector.Env{Job: "crm", Store: db}
	s, err := src.Open(env)
	if err != nil {
		t.Fatal(err)
	}
	k, err := sink.Open(env)
	if err != nil {
		t.Fatal(err)
	}
	mapping, err := m.Compile()
	if err != nil {
		t.Fatal(err)
	}
	safety := (&connector.SafetyConfig{}).Safety()
	safety.MaxDeletePercent = 100
	r.job = &connector.Job{Name: "crm", Source: s, Sink: k, Mapping: mapping, PhoneRegion: "FR", Safety: safety, KeepDays: keepDays}
	r.eng = &connector.Engine{Store: db, Now: func() time.Time { return r.now }, SpoolDir: dir}
	return r
}

func (r *rig) drop(content string) {
	r.t.Helper()
	r.drops++
	p := filepath.Join(r.dir, "drop", fmt.Sprintf("crm-%03d.csv", r.drops))
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
	mt := time.Now().Add(-time.Duration(100-r.drops) * time.Hour)
	if err := os.Chtimes(p, mt, mt); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) sync() *connector.Result {
	r.t.Helper()
	res, err := r.eng.Run(context.Background(), r.job, connector.RunOptions{})
	if err != nil {
		r.t.Fatalf("run: %v", err)
	}
	return res
}

func TestRetentionPrunesOldDetail(t *testing.T) {
	r := newRig(t, "snapshot", 1)
	r.drop("id,name,phone\n1,One,0123456789\n")
	first := r.sync()
	r.now = r.now.Add(72 * time.Hour)
	r.drop("id,name,phone\n1,One,0123456789\n2,Two,0123456780\n")
	second := r.sync()
	ctx := context.Background()
	run, changes, _, err := r.db.RunDetail(ctx, first.Run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Created != 1 || len(changes) != 0 {
		t.Errorf("old run: figures %+v kept, %d changes (want the figures kept and the detail pruned)", run.Counts, len(changes))
	}
	if _, changes, _, _ := r.db.RunDetail(ctx, second.Run.ID); len(changes) != 1 {
		t.Errorf("new run has %d changes, want 1", len(changes))
	}
}

func TestDuplicateKeysRejectBothAndDeleteNothing(t *testing.T) {
	r := newRig(t, "snapshot", 0)
	r.drop("id,name,phone\n1,One,0123456789\n2,Two,0123456780\n")
	r.sync()
	r.drop("id,name,phone\n1,One,0123456789\n2,Two bis,0123456780\n2,Two ter,0123456781\n")
	res := r.sync()
	c := res.Run.Counts
	if c.Rejected != 1 || c.Deleted != 0 || c.Updated != 0 || c.Unchanged != 1 {
		t.Errorf("counts %+v: want key 2 rejected, 1 unchanged, nothing deleted or updated", c)
	}
	for _, rj := range res.Rejected {
		if rj.Key != "2" || !strings.Contains(rj.Reason, "duplicate") || !strings.Contains(rj.Reason, "3") || !strings.Contains(rj.Reason, "4") {
			t.Errorf("rejection %+v", rj)
		}
	}
}

func TestChangesModeKeepsLaterUpsert(t *testing.T) {
	r := newRig(t, "changes", 0)
	r.drop("id,name,phone\n1,One,0123456789\n")
	r.drop("id,name,phone\n1,One renamed,0123456789\n2,Two,0123456780\n")
	res := r.sync()
	if c := res.Run.Counts; c.Created != 2 || c.Deleted != 0 {
		t.Errorf("counts %+v, want 2 creates", c)
	}
	// A changes-mode file never deletes what it does not mention.
	r.drop("id,name,phone\n2,Two,0123456780\n")
	res = r.sync()
	if c := res.Run.Counts; c.Deleted != 0 || c.Unchanged != 1 {
		t.Errorf("counts %+v, want 1 unchanged and no delete", c)
	}
}

func TestPendingChangeWaitsForUUID(t *testing.T) {
	r := newRig(t, "snapshot", 0)
	r.drop("id,name,phone\n1,One,0123456789\n")
	r.sync()
	r.drop("id,name,phone\n1,One renamed,0123456789\n")
	res := r.sync()
	if c := res.Run.Counts; c.Waiting != 1 || c.Updated != 0 || c.Created != 0 {
		t.Fatalf("counts %+v, want the change waiting", c)
	}
	if len(res.Run.Files) != 0 {
		t.Errorf("a waiting change wrote %v", res.Run.Files)
	}
	// Reconcile binds the UUID; the next run, with no new file, emits the
	// update that waited.
	var c connector.Contact
	c[connector.DisplayName], c[connector.Phone1], c[connector.Phone1Type] = "One", "+33123456789", "work"
	rec, err := r.eng.Reconcile(context.Background(), r.job, func(fn func(connector.ExportRow) error) error {
		return fn(connector.ExportRow{UUID: "11111111-2222-3333-4444-555555555555", Contact: c, Origin: "export.csv:2"})
	})
	if err != nil || rec.Bound != 1 {
		t.Fatalf("reconcile: %+v %v", rec, err)
	}
	res = r.sync()
	if c := res.Run.Counts; c.Updated != 1 {
		t.Fatalf("counts %+v, want the waiting update emitted", c)
	}
	data, err := os.ReadFile(res.Run.Files[0])
	if err != nil || !strings.Contains(string(data), "One renamed,11111111-2222-3333-4444-555555555555") {
		t.Errorf("import file:\n%s (%v)", data, err)
	}
}
