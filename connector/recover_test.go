package connector_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

// orderStore checks, when the engine marks interrupted runs failed, that
// their output is already gone: a process killed between the two steps
// must not leave files that no running run owns.
type orderStore struct {
	connector.Store
	t      *testing.T
	outbox string
	calls  int
}

func (s *orderStore) RecoverInterrupted(ctx context.Context, reason string) ([]connector.Run, error) {
	s.calls++
	left, err := filepath.Glob(filepath.Join(s.outbox, "*"))
	if err != nil {
		s.t.Fatal(err)
	}
	if len(left) != 0 {
		s.t.Errorf("interrupted run marked failed while its files remain: %v", left)
	}
	return s.Store.RecoverInterrupted(ctx, reason)
}

func TestRecoverRemovesOutputBeforeMarkingFailed(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		running bool // the newest run is still "running"
	}{
		{"interrupted run", true},
		{"no interrupted run", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "snapshot", 0)
			r.drop("id;name;phone\n1;Ada;+33 1 23 45 67 89\n")
			first := r.sync()
			if first.Run.Status != connector.StatusOK {
				t.Fatalf("first run: %s %s", first.Run.Status, first.Run.Reason)
			}
			// What a killed run leaves: a "running" row and its files.
			id, err := r.db.StartRun(ctx, connector.Run{Job: "crm", Kind: "sync", StartedAt: r.now, Status: connector.StatusRunning})
			if err != nil {
				t.Fatal(err)
			}
			if !tt.running {
				if err := r.db.FinishRun(ctx, connector.Run{ID: id, Job: "crm", Status: connector.StatusFailed, StartedAt: r.now, FinishedAt: r.now}); err != nil {
					t.Fatal(err)
				}
			}
			kept, err := filepath.Glob(filepath.Join(r.outbox, "*"))
			if err != nil || len(kept) == 0 {
				t.Fatalf("the first run's files: %v %v", kept, err)
			}
			for _, f := range kept {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
			name := filepath.Join(r.outbox, filepath.Base(kept[0]))
			if err := os.WriteFile(name, []byte("left by the killed run\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			// The killed run's file carries its id in the name, as the sink writes it.
			killed := filepath.Join(r.outbox, fmt.Sprintf("crm-run%06d-import-001.csv", id))
			if err := os.Rename(name, killed); err != nil {
				t.Fatal(err)
			}
			st := &orderStore{Store: r.db, t: t, outbox: r.outbox}
			if !tt.running {
				st.outbox = t.TempDir() // nothing to remove: nothing to check
			}
			eng := &connector.Engine{Store: st, Now: r.eng.Now, SpoolDir: r.dir}
			if err := eng.Recover(ctx, []*connector.Job{r.job}); err != nil {
				t.Fatal(err)
			}
			if st.calls != 1 {
				t.Fatalf("RecoverInterrupted called %d times", st.calls)
			}
			_, err = os.Stat(killed)
			if tt.running && !os.IsNotExist(err) {
				t.Errorf("the interrupted run's file is still there: %v", err)
			}
			if !tt.running && err != nil {
				t.Errorf("a failed run's file was removed: %v", err)
			}
			runs, err := r.db.Runs(ctx, "crm", 1)
			if err != nil {
				t.Fatal(err)
			}
			if runs[0].Status != connector.StatusFailed {
				t.Errorf("newest run %s, want failed", runs[0].Status)
			}
		})
	}
}
