package connector_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sinks/csvfile"
)

// streamSpy is the CSV sink as the engine sees it, counting how its output
// went: through a stream or through Apply alone.
type streamSpy struct {
	connector.StreamingSink
	opened, creates, streamApplies, aborts, directApplies atomic.Int32
	// late counts creates written after the stream was applied or
	// aborted: a stream goroutine that outlived its run.
	late atomic.Int32
	// failAt, when not 0, is the create the stream fails to write.
	failAt int32
}

func (s *streamSpy) RemoveOutput(job string, runID int64) ([]string, error) {
	return s.StreamingSink.(connector.OutputRemover).RemoveOutput(job, runID)
}

func (s *streamSpy) Apply(ctx context.Context, run connector.RunInfo, plan connector.Plan, out connector.Outcomes) (connector.ApplyResult, error) {
	s.directApplies.Add(1)
	return s.StreamingSink.Apply(ctx, run, plan, out)
}

func (s *streamSpy) OpenStream(ctx context.Context, run connector.RunInfo) (connector.OutputStream, error) {
	out, err := s.StreamingSink.OpenStream(ctx, run)
	if err != nil {
		return nil, err
	}
	s.opened.Add(1)
	return &spyStream{OutputStream: out, s: s}, nil
}

type spyStream struct {
	connector.OutputStream
	s    *streamSpy
	over atomic.Bool
}

func (st *spyStream) Create(c *connector.Change) error {
	if st.over.Load() {
		st.s.late.Add(1)
	}
	if n := st.s.creates.Add(1); n == st.s.failAt {
		return errors.New("stream broke")
	}
	return st.OutputStream.Create(c)
}

func (st *spyStream) Apply(ctx context.Context, plan connector.Plan, out connector.Outcomes) (connector.ApplyResult, error) {
	st.over.Store(true)
	st.s.streamApplies.Add(1)
	return st.OutputStream.Apply(ctx, plan, out)
}

func (st *spyStream) Abort() {
	st.over.Store(true)
	st.s.aborts.Add(1)
	st.OutputStream.Abort()
}

// failingCSV reports the creates of some keys failed, as an API sink
// would: their entries are stored failed, to be created again.
type failingCSV struct {
	connector.Sink
	keys []string
}

func (f *failingCSV) Apply(ctx context.Context, run connector.RunInfo, plan connector.Plan, out connector.Outcomes) (connector.ApplyResult, error) {
	res, err := f.Sink.Apply(ctx, run, plan, out)
	for _, k := range f.keys {
		out.Failed(k, "forced failure")
	}
	return res, err
}

// smallSink is the CSV sink of r's outbox with files of maxRows rows.
func smallSink(t *testing.T, r *rig, maxRows int) connector.StreamingSink {
	t.Helper()
	v := connector.NewValidator(r.dir)
	c := &csvfile.Config{Dir: "outbox", MaxRows: maxRows}
	c.Validate(v.At("sink"))
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	k, err := c.Open(connector.Env{Job: "crm", Store: r.db})
	if err != nil {
		t.Fatal(err)
	}
	return k.(connector.StreamingSink)
}

// bindAll reconciles every pending contact of r's job, as an export of
// Control Hub would, so that later changes to them are updates.
func bindAll(t *testing.T, r *rig) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	if err := r.db.Entries(ctx, "crm", func(en connector.Entry) error {
		keys = append(keys, en.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stored, err := r.db.Contacts(ctx, "crm", keys)
	if err != nil {
		t.Fatal(err)
	}
	rows := func(fn func(connector.ExportRow) error) error {
		for _, k := range keys {
			if err := fn(connector.ExportRow{UUID: "uuid-" + k, Contact: stored[k].Contact, Origin: "export.csv"}); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := r.eng.Reconcile(ctx, r.job, rows); err != nil {
		t.Fatal(err)
	}
}

// streamNight is one run of TestStreamedRunsMatchUnstreamed.
type streamNight struct {
	drops    []string
	failKeys []string // the sink reports these creates failed (not streamed)
	bind     bool     // reconcile every pending contact before the run
}

// outputStreams lists the goroutines of output streams still running. A
// goroutine that closed its done channel may take a moment to be gone:
// it is looked for again for up to a second.
func outputStreams() []string {
	var left []string
	for range 100 {
		if left = streamGoroutines(); len(left) == 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return left
}

func streamGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "outStream).loop") {
			left = append(left, g)
		}
	}
	return left
}

// TestStreamedRunsMatchUnstreamed runs the same nights with the output
// streamed during the pull and without, and wants the same files, file
// lists and state; and that the stream is used, or abandoned, as planned.
func TestStreamedRunsMatchUnstreamed(t *testing.T) {
	row := func(k int, name string) string { return fmt.Sprintf("%d,%s,01%08d\n", k, name, k) }
	tests := []struct {
		name  string
		mode  string // "": snapshot
		allow []connector.Action
		runs  []streamNight
		// streamed and aborted count the runs whose Apply went through a
		// stream, and the streams abandoned.
		streamed, aborted int32
		// streamFail: the stream fails to write its create number so.
		streamFail int32
	}{
		{
			// The plan writes every create again, from what the stage
			// gives back (the spool skipped them while streamed).
			name:       "first import, the stream fails",
			runs:       []streamNight{{drops: []string{manyRows(0, 10, "")}}},
			streamFail: 7, aborted: 1,
		},
		{name: "first import", runs: []streamNight{{drops: []string{manyRows(0, 10, "")}}}, streamed: 1},
		{name: "first import of exactly full files", runs: []streamNight{{drops: []string{manyRows(0, 9, "")}}}, streamed: 1},
		{
			name: "first import, a key twice in changes mode: revert",
			mode: "changes",
			runs: []streamNight{{drops: []string{manyRows(0, 10, ""), manyRows(4, 5, " bis")}}},
			// The second drop's record undoes a streamed create.
			aborted: 1,
		},
		{
			name:    "first import, a duplicate key rejected",
			runs:    []streamNight{{drops: []string{manyRows(0, 7, "") + row(2, "Again")}}},
			aborted: 1,
		},
		{
			name: "fresh creates, then the create of a failed entry's key",
			runs: []streamNight{
				{drops: []string{manyRows(0, 5, "")}, failKeys: []string{"2"}},
				{drops: []string{"id,name,phone\n" + row(5, "Five") + row(6, "Six") + row(7, "Seven") + row(8, "Eight") + row(2, "Two") + row(9, "Nine")}},
			},
			streamed: 0, aborted: 1,
		},
		{
			name: "a failed create retried after the streamed ones",
			mode: "changes",
			runs: []streamNight{
				{drops: []string{manyRows(0, 5, "")}, failKeys: []string{"2"}},
				{drops: []string{manyRows(10, 17, "")}},
			},
			streamed: 1,
		},
		{
			name:     "creates and rejections",
			runs:     []streamNight{{drops: []string{manyRows(0, 5, "") + "x,Bad,not a phone\n" + row(6, "Six")}}},
			streamed: 1,
		},
		{
			name: "second night: creates, updates, waiting updates, deletes",
			runs: []streamNight{
				{drops: []string{manyRows(0, 8, "")}},
				{drops: []string{manyRows(3, 6, " bis") + "6,Name 6,0100000006\n" + manyRows(20, 27, "")[len("id,name,phone\n"):]}, bind: true},
				{drops: []string{manyRows(4, 6, " ter") + manyRows(20, 24, " bis")[len("id,name,phone\n"):] + manyRows(30, 35, "")[len("id,name,phone\n"):]}},
			},
			streamed: 3,
		},
		{
			name:    "creates held back by safety.allow",
			allow:   []connector.Action{connector.ActionUpdate, connector.ActionDelete},
			runs:    []streamNight{{drops: []string{manyRows(0, 5, "")}}},
			aborted: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dumps, files, lists [2]string
			for i, stream := range []bool{false, true} {
				mode := tt.mode
				if mode == "" {
					mode = "snapshot"
				}
				r := newRig(t, mode, 0)
				spy := &streamSpy{StreamingSink: smallSink(t, r, 3), failAt: tt.streamFail}
				if tt.allow != nil {
					r.job.Safety.Allow = map[connector.Action]bool{}
					for _, a := range tt.allow {
						r.job.Safety.Allow[a] = true
					}
				}
				var list strings.Builder
				for _, night := range tt.runs {
					for _, d := range night.drops {
						r.drop(d)
					}
					if night.bind {
						bindAll(t, r)
					}
					switch {
					case night.failKeys != nil:
						r.job.Sink = &failingCSV{Sink: spy, keys: night.failKeys}
					case stream:
						r.job.Sink = spy
					default:
						// Atomic, so staged, but no stream.
						r.job.Sink = &atomicSink{Sink: spy}
					}
					res, err := r.eng.Run(context.Background(), r.job, connector.RunOptions{})
					if err != nil {
						t.Fatalf("run: %v", err)
					}
					for _, f := range res.Run.Files {
						fmt.Fprintf(&list, "%s ", filepath.Base(f))
					}
					list.WriteString("\n")
				}
				if left := outputStreams(); len(left) > 0 {
					t.Errorf("output stream goroutines left: %v", left)
				}
				if spy.late.Load() != 0 {
					t.Errorf("%d creates streamed after the run ended", spy.late.Load())
				}
				if stream {
					if got := spy.streamApplies.Load(); got != tt.streamed {
						t.Errorf("%d runs applied through a stream, want %d", got, tt.streamed)
					}
					if got := spy.aborts.Load(); got != tt.aborted {
						t.Errorf("%d streams aborted, want %d", got, tt.aborted)
					}
				} else if spy.opened.Load() != 0 {
					t.Errorf("a stream was opened for a sink that does not stream")
				}
				dumps[i], lists[i] = stateDump(t, r), list.String()
				files[i] = fmt.Sprint(outboxFiles(t, r))
			}
			if dumps[0] != dumps[1] {
				t.Errorf("streamed state differs:\nunstreamed:\n%s\nstreamed:\n%s", dumps[0], dumps[1])
			}
			if files[0] != files[1] {
				t.Errorf("streamed files differ:\nunstreamed: %s\nstreamed: %s", files[0], files[1])
			}
			if lists[0] != lists[1] {
				t.Errorf("streamed runs report other files:\nunstreamed: %s\nstreamed: %s", lists[0], lists[1])
			}
		})
	}
}

// hookSource calls hook when the source hands over its record number
// after; an error of hook is the emitter's.
type hookSource struct {
	connector.Source
	after int
	hook  func() error
}

func (s *hookSource) Pull(ctx context.Context, req connector.PullRequest, emit connector.Emitter) (connector.PullResult, error) {
	return s.Source.Pull(ctx, req, &hookEmitter{Emitter: emit, s: s})
}

type hookEmitter struct {
	connector.Emitter
	s *hookSource
	n int
}

func (e *hookEmitter) Record(r *connector.Record) error {
	if e.n++; e.n == e.s.after {
		if err := e.s.hook(); err != nil {
			return err
		}
	}
	return e.Emitter.Record(r)
}

var errSourceBroke = errors.New("source broke")

// waitStreamed waits until the stream goroutine wrote n creates: with
// GOMAXPROCS 1 it runs only when the runner lets it.
func waitStreamed(t *testing.T, spy *streamSpy, n int32) {
	deadline := time.Now().Add(10 * time.Second)
	for spy.creates.Load() < n {
		if time.Now().After(deadline) {
			t.Errorf("%d creates streamed after 10 s, want %d", spy.creates.Load(), n)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStreamAbortedWithoutApply makes a run whose creates were streamed
// end before or inside Apply, and wants no file of it, temporary or final,
// and no stream goroutine left.
func TestStreamAbortedWithoutApply(t *testing.T) {
	const first = "id,name,phone\n1,One,0123456789\n2,Two,0123456780\n3,Three,0123456781\n"
	tests := []struct {
		name   string
		status string
		reason string
		// inline maps records on the runner (GOMAXPROCS 1), so that creates
		// are streamed before a failure in the middle of the pull.
		inline bool
		setup  func(t *testing.T, r *rig, spy *streamSpy, cancel context.CancelFunc)
	}{
		{
			name: "deletion guard", status: connector.StatusBlocked, inline: true,
			setup: func(t *testing.T, r *rig, spy *streamSpy, _ context.CancelFunc) {
				r.job.Source = &hookSource{Source: r.job.Source, after: 900, hook: func() error {
					waitStreamed(t, spy, 512)
					return nil
				}}
				r.job.Safety.MaxDeletes = 1
			},
		},
		{
			name: "source error in the middle of the pull", status: connector.StatusFailed, reason: errSourceBroke.Error(), inline: true,
			setup: func(t *testing.T, r *rig, spy *streamSpy, _ context.CancelFunc) {
				r.job.Source = &hookSource{Source: r.job.Source, after: 900, hook: func() error {
					waitStreamed(t, spy, 512)
					return errSourceBroke
				}}
			},
		},
		{
			name: "cancelled in the middle of the pull", status: connector.StatusFailed, reason: "context canceled", inline: true,
			setup: func(t *testing.T, r *rig, spy *streamSpy, cancel context.CancelFunc) {
				r.job.Source = &hookSource{Source: r.job.Source, after: 900, hook: func() error {
					waitStreamed(t, spy, 512)
					cancel()
					return nil
				}}
			},
		},
		{
			name: "a final name is taken", status: connector.StatusFailed, reason: "file already exists",
			setup: func(t *testing.T, r *rig, _ *streamSpy, _ context.CancelFunc) {
				// The second file of run 2: its first is renamed into place
				// before, and must be removed again. (The failed run's
				// RemoveOutput then removes this one too, stream or not.)
				if err := os.WriteFile(filepath.Join(r.outbox, "crm-run000002-import-002.csv"), []byte("kept"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "snapshot", 0)
			spy := &streamSpy{StreamingSink: smallSink(t, r, 100)}
			r.job.Sink = spy
			r.drop(first)
			r.sync()
			before := outboxFiles(t, r)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tt.setup(t, r, spy, cancel)
			if tt.inline {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			}
			r.drop(manyRows(10, 1000, ""))
			creates := spy.creates.Load()
			res, err := r.eng.Run(ctx, r.job, connector.RunOptions{})
			if err == nil {
				t.Fatal("the run did not fail")
			}
			if res.Run.Status != tt.status || !strings.Contains(res.Run.Reason, tt.reason) {
				t.Errorf("run %s (%q), want %s (%q)", res.Run.Status, res.Run.Reason, tt.status, tt.reason)
			}
			if spy.creates.Load()-creates < 300 {
				t.Errorf("only %d creates streamed before the failure", spy.creates.Load()-creates)
			}
			if left := outputStreams(); len(left) > 0 {
				t.Errorf("output stream goroutines left: %v", left)
			}
			want := slices.Sorted(keysOf(before))
			got := slices.Sorted(keysOf(outboxFiles(t, r)))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("outbox %v after the failed run, want %v", got, want)
			}
		})
	}
}

func keysOf(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestRecoverRemovesStreamedFiles: a run killed after it streamed rows
// leaves temporary files, which the next session's Recover removes.
func TestRecoverRemovesStreamedFiles(t *testing.T) {
	r := newRig(t, "snapshot", 0)
	spy := &streamSpy{StreamingSink: smallSink(t, r, 100)}
	r.job.Sink = spy
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	r.drop(manyRows(0, 3, ""))
	r.sync()
	before := outboxFiles(t, r)
	// What a process killed in the middle of the pull leaves: its run
	// "running", and the temporary files, saved here and put back after
	// the panic's unwinding removed them.
	saved := map[string][]byte{}
	r.job.Source = &hookSource{Source: r.job.Source, after: 900, hook: func() error {
		waitStreamed(t, spy, 512)
		tmp, err := filepath.Glob(filepath.Join(r.outbox, ".crm-run000002-*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tmp {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			saved[p] = data
		}
		panic("killed")
	}}
	r.drop(manyRows(10, 1000, ""))
	func() {
		defer func() {
			if p := recover(); p != "killed" {
				t.Fatalf("recovered %v, want the simulated kill", p)
			}
		}()
		_, _ = r.eng.Run(context.Background(), r.job, connector.RunOptions{})
	}()
	if len(saved) < 2 {
		t.Fatalf("%d temporary files while the pull ran, want the held full files and the open one", len(saved))
	}
	for p, data := range saved {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.eng.Recover(context.Background(), []*connector.Job{r.job}); err != nil {
		t.Fatal(err)
	}
	if got := outboxFiles(t, r); !reflect.DeepEqual(got, before) {
		t.Errorf("outbox after Recover: %v, want %v", slices.Sorted(keysOf(got)), slices.Sorted(keysOf(before)))
	}
	runs, err := r.db.Runs(context.Background(), "crm", 1)
	if err != nil || len(runs) != 1 || runs[0].Status != connector.StatusFailed {
		t.Errorf("interrupted run recorded as %+v (%v), want failed", runs, err)
	}
}

// BenchmarkEngineCSVImport is a first import of 20,000 records into real
// Control Hub files (max_rows 10,000) and a real state, with the files
// streamed during the pull and without (written by Apply after it).
func BenchmarkEngineCSVImport(b *testing.B) {
	const n = 20_000
	for _, stream := range []bool{false, true} {
		b.Run(fmt.Sprintf("streamed=%v", stream), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				db, dir := openBenchState(b)
				job := benchJob(b, "FR", &memSource{n: n})
				v := connector.NewValidator(dir)
				c := &csvfile.Config{Dir: fmt.Sprintf("outbox%d", i)}
				c.Validate(v.At("sink"))
				if err := v.Err(); err != nil {
					b.Fatal(err)
				}
				k, err := c.Open(connector.Env{Job: "bench", Store: db})
				if err != nil {
					b.Fatal(err)
				}
				job.Sink = k
				if !stream {
					job.Sink = &atomicSink{Sink: k}
				}
				eng := &connector.Engine{Store: db, SpoolDir: dir}
				b.StartTimer()
				res := runBench(b, eng, job, connector.RunOptions{})
				if res.Run.Counts.Created != n || len(res.Run.Files) != 2 {
					b.Fatalf("created %d in %d files, want %d in 2", res.Run.Counts.Created, len(res.Run.Files), n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
	}
}
