package connector_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/state"
)

// rowSource hands over its rows as LDAP-like records, in order.
type rowSource struct {
	names []string
	rows  [][]string // rows[i][0] is the key
}

func (s *rowSource) Pull(ctx context.Context, req connector.PullRequest, emit connector.Emitter) (connector.PullResult, error) {
	var rec connector.Record
	for _, row := range s.rows {
		rec.Key, rec.Origin = row[0], "uid="+row[0]
		rec.Names = append(rec.Names[:0], s.names...)
		rec.Values = append(rec.Values[:0], row...)
		if err := emit.Record(&rec); err != nil {
			return connector.PullResult{}, err
		}
	}
	return connector.PullResult{Identity: "rows", Complete: true}, nil
}

// apiSink stands for the Webex API: a create is bound at once to a UUID,
// and the changes of the keys in fail are reported failed.
type apiSink struct {
	fail    map[string]bool
	applied []string // "action key" of every change handed over
}

func (a *apiSink) Apply(ctx context.Context, run connector.RunInfo, plan connector.Plan, out connector.Outcomes) (connector.ApplyResult, error) {
	a.applied = nil
	err := plan.Changes(func(c *connector.Change) error {
		a.applied = append(a.applied, string(c.Action)+" "+c.Key)
		switch {
		case a.fail[c.Key]:
			out.Failed(c.Key, "webex: 500 Internal Server Error")
		case c.Action == connector.ActionCreate:
			out.Bound(c.Key, "uuid-"+c.Key)
		}
		return nil
	})
	return connector.ApplyResult{}, err
}

type hashRig struct {
	t    *testing.T
	db   *state.DB
	eng  *connector.Engine
	job  *connector.Job
	src  *rowSource
	sink *apiSink
}

func hashMapping(t *testing.T, display string) *connector.Mapping {
	t.Helper()
	m := &connector.MappingConfig{
		DisplayName: display, Title: "{{.title}}",
		Phones:      []connector.PhoneMapping{{Value: "{{.telephonenumber}}", Type: "work"}},
		PhoneRegion: "FR",
	}
	mp, err := m.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return mp
}

func newHashRig(t *testing.T) *hashRig {
	t.Helper()
	dir := t.TempDir()
	db, err := state.Open(context.Background(), filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	src := &rowSource{names: []string{"uid", "cn", "title", "telephonenumber", "description"}}
	for i := range 5 {
		src.rows = append(src.rows, []string{fmt.Sprint("k", i), fmt.Sprint("Person ", i), "Buyer", fmt.Sprintf("01 42 68 53 0%d", i), "unmapped"})
	}
	sink := &apiSink{fail: map[string]bool{}}
	safety := (&connector.SafetyConfig{}).Safety()
	safety.MaxDeletePercent = 100
	job := &connector.Job{Name: "hash", Source: src, Sink: sink, Mapping: hashMapping(t, "{{.cn}}"), PhoneRegion: "FR", Safety: safety}
	return &hashRig{t: t, db: db, eng: &connector.Engine{Store: db, SpoolDir: dir}, job: job, src: src, sink: sink}
}

// run runs the job and returns its counts and how many records it mapped.
func (h *hashRig) run() (connector.Counts, int64, *connector.Result) {
	h.t.Helper()
	count, stop := connector.CountMapped()
	defer stop()
	res, err := h.eng.Run(context.Background(), h.job, connector.RunOptions{Full: true})
	if err != nil {
		h.t.Fatalf("run: %v", err)
	}
	return res.Run.Counts, count(), res
}

func (h *hashRig) sourceHashes() map[string]connector.Hash {
	h.t.Helper()
	out := map[string]connector.Hash{}
	if err := h.db.Entries(context.Background(), h.job.Name, func(e connector.Entry) error {
		out[e.Key] = e.SourceHash
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// audited returns how many change rows the run left in the audit.
func (h *hashRig) audited(res *connector.Result) int {
	h.t.Helper()
	_, changes, _, err := h.db.RunDetail(context.Background(), res.Run.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(changes)
}

// TestSourceHashSkipsMapping checks each path of the source hash, with the
// mapping workers (GOMAXPROCS 2) and without them (1).
func TestSourceHashSkipsMapping(t *testing.T) {
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprint("procs=", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			testSourceHash(t)
		})
	}
}

func testSourceHash(t *testing.T) {
	t.Run("unchanged rerun maps nothing", func(t *testing.T) {
		h := newHashRig(t)
		if c, mapped, _ := h.run(); c.Created != 5 || mapped != 5 {
			t.Fatalf("first run: counts %+v, mapped %d", c, mapped)
		}
		for k, sh := range h.sourceHashes() {
			if sh.IsZero() {
				t.Errorf("create of %s stored no source hash", k)
			}
		}
		c, mapped, _ := h.run()
		if c.Unchanged != 5 || mapped != 0 || len(h.sink.applied) != 0 {
			t.Errorf("rerun: counts %+v, mapped %d, emitted %v; want 5 unchanged, none mapped", c, mapped, h.sink.applied)
		}
	})
	t.Run("mapping change remaps once and emits nothing", func(t *testing.T) {
		h := newHashRig(t)
		h.run()
		before := h.sourceHashes()
		// Another template that gives the same contacts.
		h.job.Mapping = hashMapping(t, "{{ trim .cn }}")
		c, mapped, res := h.run()
		if c.Unchanged != 5 || mapped != 5 || len(h.sink.applied) != 0 {
			t.Errorf("after the change: counts %+v, mapped %d, emitted %v; want all mapped, unchanged", c, mapped, h.sink.applied)
		}
		if n := h.audited(res); n != 0 {
			t.Errorf("refreshing source hashes left %d audit rows", n)
		}
		after := h.sourceHashes()
		for k := range before {
			if after[k] == before[k] || after[k].IsZero() {
				t.Errorf("source hash of %s not refreshed: %s -> %s", k, before[k], after[k])
			}
		}
		if c, mapped, _ := h.run(); c.Unchanged != 5 || mapped != 0 {
			t.Errorf("next run: counts %+v, mapped %d; want nothing mapped", c, mapped)
		}
	})
	t.Run("unmapped column change remaps once and emits nothing", func(t *testing.T) {
		h := newHashRig(t)
		h.run()
		before := h.sourceHashes()
		h.src.rows[2][4] = "changed"
		c, mapped, res := h.run()
		if c.Unchanged != 5 || mapped != 1 || len(h.sink.applied) != 0 || h.audited(res) != 0 {
			t.Errorf("counts %+v, mapped %d, emitted %v; want k2 mapped, nothing emitted or audited", c, mapped, h.sink.applied)
		}
		if after := h.sourceHashes(); after["k2"] == before["k2"] || after["k1"] != before["k1"] {
			t.Errorf("source hashes: k2 %s -> %s, k1 %s -> %s", before["k2"], after["k2"], before["k1"], after["k1"])
		}
		if _, mapped, _ := h.run(); mapped != 0 {
			t.Errorf("next run mapped %d", mapped)
		}
	})
	t.Run("failed update is retried", func(t *testing.T) {
		h := newHashRig(t)
		h.run()
		h.src.rows[1][2] = "Head buyer"
		h.sink.fail["k1"] = true
		if c, mapped, _ := h.run(); c.Rejected != 1 || mapped != 1 {
			t.Fatalf("failing run: counts %+v, mapped %d", c, mapped)
		}
		if sh := h.sourceHashes()["k1"]; !sh.IsZero() {
			t.Errorf("a failed update left source hash %s", sh)
		}
		delete(h.sink.fail, "k1")
		c, mapped, _ := h.run()
		if c.Updated != 1 || mapped != 1 || len(h.sink.applied) != 1 || h.sink.applied[0] != "update k1" {
			t.Errorf("retry: counts %+v, mapped %d, emitted %v; want the update of k1", c, mapped, h.sink.applied)
		}
		if c, mapped, _ := h.run(); c.Unchanged != 5 || mapped != 0 {
			t.Errorf("after the retry: counts %+v, mapped %d", c, mapped)
		}
	})
	t.Run("failed create is retried", func(t *testing.T) {
		h := newHashRig(t)
		h.sink.fail["k3"] = true
		h.run()
		delete(h.sink.fail, "k3")
		c, mapped, _ := h.run()
		if c.Created != 1 || mapped != 1 || len(h.sink.applied) != 1 || h.sink.applied[0] != "create k3" {
			t.Errorf("retry: counts %+v, mapped %d, emitted %v; want the create of k3", c, mapped, h.sink.applied)
		}
	})
	t.Run("held update is planned again", func(t *testing.T) {
		h := newHashRig(t)
		h.run()
		h.job.Safety.Allow[connector.ActionUpdate] = false
		h.src.rows[0][2] = "Head buyer"
		if c, _, _ := h.run(); c.Waiting != 1 {
			t.Fatalf("held run: counts %+v", c)
		}
		if c, mapped, _ := h.run(); c.Waiting != 1 || mapped != 1 {
			t.Errorf("held again: counts %+v, mapped %d", c, mapped)
		}
		h.job.Safety.Allow[connector.ActionUpdate] = true
		if c, mapped, _ := h.run(); c.Updated != 1 || mapped != 1 {
			t.Errorf("allowed: counts %+v, mapped %d; want the update", c, mapped)
		}
	})
	t.Run("pending waiting change is not skipped", func(t *testing.T) {
		h := newHashRig(t)
		h.job.Sink = &discardSink{} // creates through a file: pending
		h.run()
		h.src.rows[4][1] = "Person four"
		if c, _, _ := h.run(); c.Waiting != 1 {
			t.Fatalf("counts %+v, want the change waiting", c)
		}
		c, mapped, _ := h.run()
		if c.Waiting != 1 || c.Unchanged != 4 || mapped != 1 {
			t.Errorf("next run: counts %+v, mapped %d; want the change still waiting", c, mapped)
		}
	})
}
