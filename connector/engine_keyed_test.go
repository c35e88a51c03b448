package connector_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/state"
)

// changeSource hands over a population on its first pull (complete), then
// the changes of ops, as an incremental source would.
type changeSource struct {
	names    []string
	first    [][]string
	ops      []changeOp
	complete bool // the incremental pull turns out complete (a refused cursor)
	pulls    int
}

type changeOp struct {
	del, reject bool
	row         []string // row[0] is the key
}

var _ connector.IncrementalSource = (*changeSource)(nil)

func (s *changeSource) Incremental(req connector.PullRequest) bool {
	return !req.Full && len(req.Cursor) > 0
}

func (s *changeSource) Pull(ctx context.Context, req connector.PullRequest, emit connector.Emitter) (connector.PullResult, error) {
	s.pulls++
	res := connector.PullResult{Identity: "changes", Cursor: []byte(fmt.Sprint("pull ", s.pulls))}
	ops := s.ops
	if len(req.Cursor) == 0 {
		ops = nil
		for _, row := range s.first {
			ops = append(ops, changeOp{row: row})
		}
		res.Complete = true
	} else {
		res.Complete = s.complete
	}
	var rec connector.Record
	for _, op := range ops {
		key := op.row[0]
		var err error
		switch {
		case op.del:
			err = emit.Delete(key, "uid="+key)
		case op.reject:
			err = emit.Reject(key, "uid="+key, "rejected by the test")
		default:
			rec.Key, rec.Origin = key, "uid="+key
			rec.Names = append(rec.Names[:0], s.names...)
			rec.Values = append(rec.Values[:0], op.row...)
			err = emit.Record(&rec)
		}
		if err != nil {
			return connector.PullResult{}, err
		}
	}
	return res, nil
}

// wholeStore is the state without its look-ups: the engine reads every
// entry, as before keyed indexes.
type wholeStore struct{ connector.Store }

// countingStore counts the entries the engine reads.
type countingStore struct {
	*state.DB
	whole, byKey int
}

func (s *countingStore) Entries(ctx context.Context, job string, fn func(connector.Entry) error) error {
	return s.DB.Entries(ctx, job, func(e connector.Entry) error { s.whole++; return fn(e) })
}

func (s *countingStore) EntriesByKey(ctx context.Context, job string, keys []string, fn func(connector.Entry) error) error {
	s.byKey += len(keys)
	return s.DB.EntriesByKey(ctx, job, keys, fn)
}

func personRow(i int, title string) []string {
	return []string{fmt.Sprintf("k%05d", i), fmt.Sprint("Person ", i), title, fmt.Sprintf("01 42 %02d %02d %02d", i/10000, i/100%100, i%100)}
}

// TestKeyedIndexMatchesWhole: an incremental run that looks up the keys it
// is handed leaves the same counts, the same changes handed to the sink in
// the same order, the same entries and the same blocked or failed outcome
// as the same run over an index of every entry: updates, new keys, deletes
// (of known and unknown keys), rejections, a key handed over twice, a
// record then a delete of one key, a failed create of the last run retried,
// the deletion guard, more keys than a run looks up, and a pull that turns
// out complete.
func TestKeyedIndexMatchesWhole(t *testing.T) {
	const n = 3000
	changes := []changeOp{
		{row: personRow(10, "Head buyer")},
		{row: personRow(n+1, "New")},
		{del: true, row: []string{"k00020"}},
		{del: true, row: []string{"nobody"}},
		{row: personRow(30, "First")},
		{reject: true, row: []string{"k00040"}},
		{row: personRow(30, "Second")},
		{row: personRow(50, "Gone soon")},
		{del: true, row: []string{"k00050"}},
		{row: personRow(n+2, "New")},
		{row: personRow(60, "Buyer")}, // unchanged
	}
	var many []changeOp
	for i := 0; i < n; i += 3 {
		many = append(many, changeOp{row: personRow(i, "Changed")})
	}
	many = append(many, changeOp{del: true, row: []string{"k00001"}})
	// More records than the engine holds while it looks up keys.
	var past []changeOp
	for i := range 17000 {
		past = append(past, changeOp{row: personRow(n+10+i, "New")})
	}
	past = append(past, changeOp{row: personRow(10, "Head buyer")}, changeOp{del: true, row: []string{"k00001"}})
	tests := []struct {
		name     string
		ops      []changeOp
		complete bool
		limit    int     // keys looked up before every entry is read; 0: the default
		procs    int     // GOMAXPROCS; 0: 2
		guard    float64 // max_delete_percent
		keyed    bool    // the run never reads every entry
	}{
		{name: "a few changes", ops: changes, keyed: true},
		{name: "a few changes, no mapping workers", ops: changes, procs: 1, keyed: true},
		{name: "deletes over the guard", ops: changes, guard: 0.01, keyed: true},
		{name: "more keys than it looks up", ops: many, limit: 100},
		{name: "one key at a time past the limit, no mapping workers", ops: many, limit: 100, procs: 1},
		{name: "past the hold", ops: past},
		{name: "the pull turns out complete", ops: changes[:5], complete: true},
	}
	type outcome struct {
		err     string
		counts  connector.Counts
		applied []string
		entries []connector.Entry
	}
	run := func(t *testing.T, tt int, keyed bool) (outcome, *countingStore) {
		tc := tests[tt]
		procs := tc.procs
		if procs == 0 {
			procs = 2
		}
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		if tc.limit > 0 {
			defer connector.SetKeyedLimit(tc.limit)()
		}
		dir := t.TempDir()
		db, err := state.Open(context.Background(), filepath.Join(dir, "state.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		src := &changeSource{names: []string{"uid", "cn", "title", "telephonenumber"}, ops: tc.ops, complete: tc.complete}
		for i := range n {
			src.first = append(src.first, personRow(i, "Buyer"))
		}
		sink := &apiSink{fail: map[string]bool{"k00007": true}}
		safety := (&connector.SafetyConfig{}).Safety()
		safety.MaxDeletes = n
		safety.MaxDeletePercent = 100
		job := &connector.Job{Name: "inc", Source: src, Sink: sink, Mapping: hashMapping(t, "{{.cn}} {{.title}}"), PhoneRegion: "FR", Safety: safety}
		eng := &connector.Engine{Store: db, SpoolDir: dir}
		if res, err := eng.Run(context.Background(), job, connector.RunOptions{}); err != nil || res.Run.Counts.Created != n-1 {
			t.Fatalf("first run: %v, %+v", err, res)
		}
		delete(sink.fail, "k00007") // its create is retried
		if tc.guard > 0 {
			job.Safety.MaxDeletePercent = tc.guard
		}
		cs := &countingStore{DB: db}
		eng.Store = wholeStore{cs}
		if keyed {
			eng.Store = cs
		}
		var o outcome
		res, err := eng.Run(context.Background(), job, connector.RunOptions{})
		if err != nil {
			o.err = err.Error()
		}
		o.counts, o.applied = res.Run.Counts, sink.applied
		if err := db.Entries(context.Background(), job.Name, func(e connector.Entry) error {
			o.entries = append(o.entries, e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return o, cs
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := run(t, i, false)
			got, cs := run(t, i, true)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("keyed index:\n got %+v\nwant %+v", got, want)
			}
			if tc.keyed && (cs.whole != 0 || cs.byKey == 0 || cs.byKey > len(tc.ops)) {
				t.Errorf("read %d entries and looked up %d keys for %d changes", cs.whole, cs.byKey, len(tc.ops))
			}
			if !tc.keyed && cs.whole == 0 {
				t.Errorf("never read every entry")
			}
		})
	}
}

// adoptingSink is an apiSink whose organization already holds contacts.
type adoptingSink struct {
	apiSink
	existing map[string]connector.Contact // by UUID
}

func (a *adoptingSink) Existing(ctx context.Context, fn func(uuid string, c *connector.Contact) error) error {
	for u, c := range a.existing {
		if err := fn(u, &c); err != nil {
			return err
		}
	}
	return nil
}

// TestKeyedIndexAdoption: an incremental run over a state that holds no
// entry adopts the organization's matching contact, as a run over the whole
// index does, and one over a state that holds entries adopts none.
func TestKeyedIndexAdoption(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	m := hashMapping(t, "{{.cn}} {{.title}}")
	names := []string{"uid", "cn", "title", "telephonenumber"}
	rec := connector.Record{Key: "k00005", Names: names, Values: personRow(5, "New")}
	var match connector.Contact
	if err := m.Apply(&rec, &match); err != nil {
		t.Fatal(err)
	}
	for _, first := range []int{0, 3} {
		t.Run(fmt.Sprint(first, " entries"), func(t *testing.T) {
			var counts [2]connector.Counts
			for i, keyed := range []bool{false, true} {
				dir := t.TempDir()
				db, err := state.Open(context.Background(), filepath.Join(dir, "state.db"), nil)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				src := &changeSource{names: names, ops: []changeOp{{row: personRow(5, "New")}, {row: personRow(6, "New")}}}
				for j := range first {
					src.first = append(src.first, personRow(100+j, "Buyer"))
				}
				sink := &adoptingSink{apiSink: apiSink{fail: map[string]bool{}}}
				safety := (&connector.SafetyConfig{}).Safety()
				safety.MinSourceRecords = 0 // the first run may find no record
				job := &connector.Job{Name: "adopt", Source: src, Sink: sink, Mapping: m, PhoneRegion: "FR", Safety: safety}
				eng := &connector.Engine{Store: db, SpoolDir: dir}
				if _, err := eng.Run(context.Background(), job, connector.RunOptions{}); err != nil {
					t.Fatal(err)
				}
				sink.existing = map[string]connector.Contact{"u-existing": match}
				eng.Store = wholeStore{db}
				if keyed {
					eng.Store = db
				}
				res, err := eng.Run(context.Background(), job, connector.RunOptions{})
				if err != nil {
					t.Fatal(err)
				}
				counts[i] = res.Run.Counts
			}
			if counts[1] != counts[0] {
				t.Errorf("keyed index: %+v, whole: %+v", counts[1], counts[0])
			}
			if wantAdopted := map[int]int{0: 1, 3: 0}[first]; counts[0].Adopted != wantAdopted {
				t.Errorf("adopted %d, want %d", counts[0].Adopted, wantAdopted)
			}
		})
	}
}

// TestNoNewDropReadsNoEntries: a snapshot run with no new drop reads none
// of the job's entries, and still emits the change that waited for its
// UUID, as a run over the whole index does.
func TestNoNewDropReadsNoEntries(t *testing.T) {
	var files [2][]string
	for i, keyed := range []bool{false, true} {
		r := newRig(t, "snapshot", 0)
		r.drop("id,name,phone\n1,One,0123456789\n2,Two,0123456780\n")
		r.sync()
		r.drop("id,name,phone\n1,One renamed,0123456789\n2,Two,0123456780\n")
		if c := r.sync().Run.Counts; c.Waiting != 1 {
			t.Fatalf("counts %+v, want the change waiting", c)
		}
		var c connector.Contact
		c[connector.DisplayName], c[connector.Phone1], c[connector.Phone1Type] = "One", "+33123456789", "work"
		if _, err := r.eng.Reconcile(context.Background(), r.job, func(fn func(connector.ExportRow) error) error {
			return fn(connector.ExportRow{UUID: "11111111-2222-3333-4444-555555555555", Contact: c, Origin: "export.csv:2"})
		}); err != nil {
			t.Fatal(err)
		}
		cs := &countingStore{DB: r.db}
		r.eng.Store = wholeStore{cs}
		if keyed {
			r.eng.Store = cs
		}
		res := r.sync()
		if c := res.Run.Counts; c.Updated != 1 || c.Created+c.Deleted+c.Waiting != 0 {
			t.Errorf("keyed %v: counts %+v, want the waiting update alone", keyed, c)
		}
		if keyed && cs.whole != 0 {
			t.Errorf("a run with no new drop read %d entries", cs.whole)
		}
		for _, f := range res.Run.Files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			files[i] = append(files[i], filepath.Base(f)+"\n"+string(b))
		}
	}
	if !reflect.DeepEqual(files[1], files[0]) {
		t.Errorf("keyed run wrote\n%q\nwhole run wrote\n%q", files[1], files[0])
	}
}
