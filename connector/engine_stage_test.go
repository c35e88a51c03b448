package connector_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

// unstaged hides the state's Stager: the engine commits as it did before
// staging existed, the reference the staged runs are compared with.
type unstaged struct{ connector.Store }

// stagingStore counts the stages opened, and can make them fail.
type stagingStore struct {
	connector.Store
	stages   int
	failFrom int // > 0: the stage's Apply fails at that change
}

func (s *stagingStore) Stage(ctx context.Context, run connector.Run) (connector.Stage, error) {
	st, err := s.Store.(connector.Stager).Stage(ctx, run)
	if err != nil {
		return nil, err
	}
	s.stages++
	return &failingStage{Stage: st, failFrom: s.failFrom}, nil
}

type failingStage struct {
	connector.Stage
	failFrom int
}

var errForced = errors.New("forced failure of the store")

func (f *failingStage) Apply(ctx context.Context, changes func(yield func(*connector.ChangeRecord) error) error) error {
	if f.failFrom <= 0 {
		return f.Stage.Apply(ctx, changes)
	}
	n := 0
	return f.Stage.Apply(ctx, func(yield func(*connector.ChangeRecord) error) error {
		return changes(func(cr *connector.ChangeRecord) error {
			if n++; n >= f.failFrom {
				return errForced
			}
			return yield(cr)
		})
	})
}

// atomicSink wraps the rig's CSV sink: after it wrote its files, it can
// fail, or cancel the run, as if it had failed at its very end.
type atomicSink struct {
	connector.Sink
	fail   bool
	cancel context.CancelFunc
}

func (s *atomicSink) AtomicApply() {}

func (s *atomicSink) RemoveOutput(job string, runID int64) ([]string, error) {
	return s.Sink.(connector.OutputRemover).RemoveOutput(job, runID)
}

func (s *atomicSink) Apply(ctx context.Context, run connector.RunInfo, plan connector.Plan, out connector.Outcomes) (connector.ApplyResult, error) {
	res, err := s.Sink.Apply(ctx, run, plan, out)
	if err == nil && s.cancel != nil {
		s.cancel()
		err = ctx.Err()
	}
	if err == nil && s.fail {
		err = errors.New("forced sink failure")
	}
	return res, err
}

// stateDump is everything a run leaves in the state: the runs with their
// audit and rejections, and the entries.
func stateDump(t *testing.T, r *rig) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	runs, err := r.db.Runs(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range runs {
		run, changes, rejected, err := r.db.RunDetail(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		run.Files = nil // the outbox paths differ
		fmt.Fprintf(&b, "run %+v\n", run)
		for _, c := range changes {
			fmt.Fprintf(&b, "  change %s %s %s %s %v %q old=%v new=%v\n", c.Action, c.Key, c.UUID, c.Status, c.Applied, c.Reason, c.Old, c.New)
		}
		for _, rj := range rejected {
			fmt.Fprintf(&b, "  rejected %+v\n", rj)
		}
	}
	err = r.db.Entries(ctx, "crm", func(en connector.Entry) error {
		fmt.Fprintf(&b, "entry %+v\n", en)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func outboxFiles(t *testing.T, r *rig) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(r.outbox)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(r.outbox + "/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(data)
	}
	return out
}

// TestStagedRunsMatchUnstaged runs the same nights of drops with the
// commit staged during the sink and without, and wants the same state,
// audit and files.
func TestStagedRunsMatchUnstaged(t *testing.T) {
	tests := []struct {
		name   string
		runs   [][]string         // the drop files of each run
		allow  []connector.Action // nil: every action
		mode   string             // "": snapshot
		stages int
	}{
		{
			name: "changes mode: a later record of a new key replaces the staged one",
			mode: "changes",
			runs: [][]string{
				{"id,name,phone\n1,One,0123456789\n2,Two,0123456780\n", "id,name,phone\n3,Three,0123456781\n2,Two bis,0123456782\n"},
				{"id,name,phone\n3,Three bis,0123456783\n4,Four,0123456784\n", "id,name,phone\n4,Four bis,0123456785\n5,Five,0123456786\n"},
			},
			stages: 2,
		},
		{
			// More creates than the staging batches in flight: batches are
			// reused while the pull goes on.
			name:   "creates over many staging batches, with duplicates",
			mode:   "changes",
			runs:   [][]string{{manyRows(0, 3000, ""), manyRows(1000, 1100, " bis")}, {manyRows(2500, 4000, " ter")}},
			stages: 2,
		},
		{
			name:   "creates only",
			runs:   [][]string{{"id,name,phone\n1,One,0123456789\n2,Two,0123456780\n3,Three,0123456781\n"}},
			stages: 1,
		},
		{
			name: "creates, waiting updates, deletes, rejections",
			runs: [][]string{
				{"id,name,phone\n1,One,0123456789\n2,Two,0123456780\n3,Three,0123456781\n4,Four,0123456782\n"},
				{"id,name,phone\n1,One bis,0123456789\n2,Two,0123456780\n5,Five,0123456783\n5,Five again,0123456784\n6,Six,not a phone\n"},
				{"id,name,phone\n2,Two,0123456790\n7,Seven,0123456785\n"},
			},
			stages: 3,
		},
		{
			name:   "creates held back by safety.allow, then allowed",
			runs:   [][]string{{"id,name,phone\n1,One,0123456789\n2,Two,0123456780\n"}},
			allow:  []connector.Action{connector.ActionUpdate, connector.ActionDelete},
			stages: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dumps [2]string
			var files [2]map[string]string
			for i, staged := range []bool{false, true} {
				mode := tt.mode
				if mode == "" {
					mode = "snapshot"
				}
				r := newRig(t, mode, 0)
				r.job.Sink = &atomicSink{Sink: r.job.Sink}
				st := &stagingStore{Store: r.db}
				if staged {
					r.eng.Store = st
				} else {
					r.eng.Store = unstaged{r.db}
				}
				if tt.allow != nil {
					r.job.Safety.Allow = map[connector.Action]bool{}
					for _, a := range tt.allow {
						r.job.Safety.Allow[a] = true
					}
				}
				for _, files := range tt.runs {
					for _, d := range files {
						r.drop(d)
					}
					if _, err := r.eng.Run(context.Background(), r.job, connector.RunOptions{}); err != nil {
						t.Fatalf("run: %v", err)
					}
				}
				if staged && st.stages != tt.stages {
					t.Errorf("%d stages opened, want %d", st.stages, tt.stages)
				}
				dumps[i], files[i] = stateDump(t, r), outboxFiles(t, r)
			}
			if dumps[0] != dumps[1] {
				t.Errorf("staged state differs:\nunstaged:\n%s\nstaged:\n%s", dumps[0], dumps[1])
			}
			if !reflect.DeepEqual(files[0], files[1]) {
				t.Errorf("staged files differ:\nunstaged: %v\nstaged: %v", files[0], files[1])
			}
		})
	}
}

// TestStagedRunFailureLeavesState makes a staged run fail in every way it
// can after its stage opened, and wants the state as the run before left
// it, with the failed run recorded and its files gone.
func TestStagedRunFailureLeavesState(t *testing.T) {
	const first = "id,name,phone\n1,One,0123456789\n2,Two,0123456780\n3,Three,0123456781\n"
	const second = "id,name,phone\n1,One,0123456789\n4,Four,0123456782\n5,Five,0123456783\n6,Six,0123456784\n"
	tests := []struct {
		name       string
		sinkFails  bool
		cancel     bool
		failFrom   int
		maxDeletes int
		// cancelAfter > 0 cancels the run once the source handed over that
		// many records. Such a run maps inline (GOMAXPROCS 1): the
		// mapping workers hold the first records while the index loads,
		// so the stage might not be open yet when the cancel comes;
		// inline, every record is decided, and its create staged, as it
		// arrives.
		cancelAfter int
		drop        string // "": second
		// created and deleted are the next run's figures (0: 3 and 2).
		created, deleted int
		status           string
		reason           string
		staged           bool // a stage was opened before the failure
	}{
		{name: "sink failure", sinkFails: true, status: connector.StatusFailed, reason: "forced sink failure", staged: true},
		{name: "cancelled during the sink", cancel: true, status: connector.StatusFailed, reason: "context canceled", staged: true},
		{name: "staging error", failFrom: 2, status: connector.StatusFailed, reason: errForced.Error(), staged: true},
		{name: "deletion guard", maxDeletes: 1, status: connector.StatusBlocked, staged: true},
		{name: "cancelled during the pull", drop: manyRows(10, 1000, ""), cancelAfter: 700, status: connector.StatusFailed,
			reason: "context canceled", staged: true, created: 990, deleted: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "snapshot", 0)
			sink := &atomicSink{Sink: r.job.Sink}
			r.job.Sink = sink
			st := &stagingStore{Store: r.db}
			r.eng.Store = st
			r.drop(first)
			r.sync()
			before := stateDump(t, r)
			beforeFiles := outboxFiles(t, r)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sink.fail = tt.sinkFails
			if tt.cancel {
				sink.cancel = cancel
			}
			st.failFrom = tt.failFrom
			src := r.job.Source
			if tt.cancelAfter > 0 {
				r.job.Source = &hookSource{Source: src, after: tt.cancelAfter, hook: func() error { cancel(); return nil }}
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			}
			safety := r.job.Safety
			if tt.maxDeletes > 0 {
				r.job.Safety.MaxDeletes = tt.maxDeletes
			}
			drop := second
			if tt.drop != "" {
				drop = tt.drop
			}
			r.drop(drop)
			stages := st.stages
			res, err := r.eng.Run(ctx, r.job, connector.RunOptions{})
			if err == nil {
				t.Fatal("the run did not fail")
			}
			if staged := st.stages > stages; staged != tt.staged {
				t.Errorf("stage opened: %v, want %v", staged, tt.staged)
			}
			if res.Run.Status != tt.status || !strings.Contains(res.Run.Reason, tt.reason) {
				t.Errorf("run %s (%q), want %s (%q)", res.Run.Status, res.Run.Reason, tt.status, tt.reason)
			}
			// The state is usable at once: the writer was released.
			runs, err := r.db.Runs(context.Background(), "crm", 1)
			if err != nil || len(runs) != 1 || runs[0].ID != res.Run.ID || runs[0].Status != tt.status {
				t.Fatalf("last run recorded %+v (%v), want run %d %s", runs, err, res.Run.ID, tt.status)
			}
			after := stateDump(t, r)
			// Only the new run's row may differ.
			if i := strings.Index(after, "\nrun "); !strings.HasPrefix(after, "run {ID:2 ") || after[i+1:] != before {
				t.Errorf("state changed by the failed run:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if got := outboxFiles(t, r); !reflect.DeepEqual(got, beforeFiles) {
				t.Errorf("outbox %v after the failed run, want %v", got, beforeFiles)
			}
			// The next run does what the failed one would have.
			sink.fail, sink.cancel, st.failFrom, r.job.Source = false, nil, 0, src
			r.job.Safety = safety
			r.drop(drop)
			created, deleted := 3, 2
			if tt.created > 0 {
				created, deleted = tt.created, tt.deleted
			}
			if res := r.sync(); res.Run.Created != created || res.Run.Deleted != deleted {
				t.Errorf("next run counts %+v, want %d creates and %d deletes", res.Run.Counts, created, deleted)
			}
		})
	}
}

// manyRows is a drop of keys from to to-1.
func manyRows(from, to int, suffix string) string {
	var b strings.Builder
	b.WriteString("id,name,phone\n")
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%d,Name %d%s,01%08d\n", i, i, suffix, i)
	}
	return b.String()
}
