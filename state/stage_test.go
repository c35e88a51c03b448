package state

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

// creates returns applied creates of keys k0.. (count of them).
func creates(prefix string, count int) []connector.ChangeRecord {
	out := make([]connector.ChangeRecord, count)
	for i := range out {
		c := mkContact(fmt.Sprintf("%s %d", prefix, i))
		out[i] = connector.ChangeRecord{Action: connector.ActionCreate, Key: fmt.Sprintf("%s%d", prefix, i),
			Status: connector.EntryPending, New: &c, Applied: true, SourceHash: connector.Hash{byte(i + 1)}}
	}
	return out
}

// auditOf returns the audit rows of run id.
func auditOf(t *testing.T, d *DB, id int64) []connector.ChangeRecord {
	t.Helper()
	_, changes, _, err := d.RunDetail(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return changes
}

// TestStageMatchesCommit stages part of a run's changes, reverts some
// staged creates, commits the rest, and wants what a plain Commit of the
// changes left (without the reverted ones) stores.
func TestStageMatchesCommit(t *testing.T) {
	old := creates("old", 3)
	upd := mkContact("old 1 renamed")
	rest := []connector.ChangeRecord{
		{Action: connector.ActionUpdate, Key: "old1", UUID: "u-1", Status: connector.EntryBound, New: &upd, Applied: true},
		{Action: connector.ActionDelete, Key: "old2", Reason: "gone", Status: "deleted", Applied: true},
		{Action: connector.ActionCreate, Key: "held", Status: connector.EntryFailed, New: &upd, Reason: "held back"},
	}
	tests := []struct {
		name    string
		staged  int // how many of the creates are staged; the others go with the commit
		creates int
		revert  []string
	}{
		{name: "nothing staged", staged: 0, creates: 5},
		{name: "all creates staged", staged: 5, creates: 5},
		{name: "creates over a batch, some staged", staged: 70, creates: 150},
		{name: "staged creates reverted", staged: 100, creates: 100, revert: []string{"new0", "new63", "new64", "new99"}},
		{name: "every staged create reverted", staged: 2, creates: 2, revert: []string{"new1", "new0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			fresh := creates("new", tt.creates)
			reverted := map[string]bool{}
			for _, k := range tt.revert {
				reverted[k] = true
			}
			var kept []connector.ChangeRecord
			for _, c := range fresh {
				if !reverted[c.Key] {
					kept = append(kept, c)
				}
			}
			want, _ := openTest(t)
			got, _ := openTest(t)
			for _, d := range []*DB{want, got} {
				if _, err := commitRecs(t, d, "crm", old); err != nil {
					t.Fatal(err)
				}
			}
			wantID, err := commitRecs(t, want, "crm", append(append([]connector.ChangeRecord{}, kept...), rest...))
			if err != nil {
				t.Fatal(err)
			}

			id, err := got.StartRun(ctx, connector.Run{Job: "crm", Kind: "sync"})
			if err != nil {
				t.Fatal(err)
			}
			st, err := got.Stage(ctx, connector.Run{ID: id, Job: "crm", Kind: "sync"})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Rollback()
			if err := st.Apply(ctx, recordsIter(fresh[:tt.staged])); err != nil {
				t.Fatal(err)
			}
			for _, k := range tt.revert {
				if err := st.Revert(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			var later []connector.ChangeRecord
			for _, c := range fresh[tt.staged:] {
				if !reverted[c.Key] {
					later = append(later, c)
				}
			}
			err = st.Commit(ctx, &connector.Commit{
				Run:     connector.Run{ID: id, Job: "crm", Kind: "sync", Status: connector.StatusOK},
				Changes: recordsIter(append(later, rest...)),
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Rollback(); err != nil {
				t.Errorf("rollback after commit: %v", err)
			}
			if id != wantID {
				t.Fatalf("run %d, want %d", id, wantID)
			}
			ws, gs := takeSnapshot(t, want, "crm"), takeSnapshot(t, got, "crm")
			if !reflect.DeepEqual(ws, gs) {
				t.Errorf("staged state:\n%+v\nwant:\n%+v", gs, ws)
			}
			if w, g := auditOf(t, want, id), auditOf(t, got, id); !reflect.DeepEqual(w, g) {
				t.Errorf("staged audit:\n%+v\nwant:\n%+v", g, w)
			}
		})
	}
}

// startStage starts a run of job crm, takes a snapshot of the state and
// opens the run's stage.
func startStage(t *testing.T, d *DB) (int64, snapshot, connector.Stage) {
	t.Helper()
	ctx := context.Background()
	id, err := d.StartRun(ctx, connector.Run{Job: "crm", Kind: "sync"})
	if err != nil {
		t.Fatal(err)
	}
	before := takeSnapshot(t, d, "crm")
	st, err := d.Stage(ctx, connector.Run{ID: id, Job: "crm", Kind: "sync"})
	if err != nil {
		t.Fatal(err)
	}
	return id, before, st
}

// TestStageRollback wants a rolled-back stage to leave nothing, release
// the writer, and refuse further use.
func TestStageRollback(t *testing.T) {
	tests := []struct {
		name  string
		apply bool
	}{
		{name: "empty stage"},
		{name: "stage with creates", apply: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			d, _ := openTest(t)
			if _, err := commitRecs(t, d, "crm", creates("old", 2)); err != nil {
				t.Fatal(err)
			}
			id, before, st := startStage(t, d)
			if tt.apply {
				if err := st.Apply(ctx, recordsIter(creates("new", 100))); err != nil {
					t.Fatal(err)
				}
			}
			for range 2 {
				if err := st.Rollback(); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Apply(ctx, recordsIter(creates("late", 1))); err == nil {
				t.Error("apply after rollback succeeded")
			}
			if after := takeSnapshot(t, d, "crm"); !reflect.DeepEqual(before, after) {
				t.Errorf("state after rollback:\n%+v\nwant:\n%+v", after, before)
			}
			// The writer is free again.
			if err := d.FinishRun(ctx, connector.Run{ID: id, Job: "crm", Kind: "sync", Status: connector.StatusFailed, Reason: "x"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStageFailedChangeOnlyRollsBack wants a stage whose change failed to
// refuse a commit, so that half a change is never stored.
func TestStageFailedChangeOnlyRollsBack(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t)
	id, before, st := startStage(t, d)
	bad := []connector.ChangeRecord{{Action: connector.ActionCreate, Key: ""}}
	if err := st.Apply(ctx, recordsIter(append(creates("new", 3), bad...))); err == nil {
		t.Fatal("a change without a key was staged")
	}
	if err := st.Revert(ctx, "new0"); err == nil {
		t.Error("revert after a failed change succeeded")
	}
	err := st.Commit(ctx, &connector.Commit{Run: connector.Run{ID: id, Job: "crm", Kind: "sync", Status: connector.StatusOK}})
	if err == nil {
		t.Fatal("a failed stage committed")
	}
	if after := takeSnapshot(t, d, "crm"); !reflect.DeepEqual(before, after) {
		t.Errorf("state after the failed stage:\n%+v\nwant:\n%+v", after, before)
	}
}
