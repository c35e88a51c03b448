package connector_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// slowIndexStore holds the index load back until the source has handed
// over some records (or a timeout passed, for a source that needs the
// index before it can go on), and can fail it.
type slowIndexStore struct {
	connector.Store
	release chan struct{}
	fail    error
	// patience, when set, lets the load go on by itself after that long:
	// for a source that waits for the index before it releases it.
	patience time.Duration
	// released: the source let the load go on (rather than the timeout),
	// so it ran while the index was loading.
	released bool
}

func (s *slowIndexStore) Entries(ctx context.Context, job string, fn func(connector.Entry) error) error {
	var timeout <-chan time.Time
	if s.patience > 0 {
		timeout = time.After(s.patience)
	}
	select {
	case <-s.release:
		s.released = true
	case <-timeout:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.fail != nil {
		return s.fail
	}
	return s.Store.Entries(ctx, job, fn)
}

// releasingSource is a rowSource that releases the index load after `after`
// records, and rejects the keys of reject when it reaches them.
type releasingSource struct {
	*rowSource
	after   int
	release chan struct{}
	reject  map[int]bool
}

func (s *releasingSource) Pull(ctx context.Context, req connector.PullRequest, emit connector.Emitter) (connector.PullResult, error) {
	var rec connector.Record
	for i, row := range s.rows {
		if i == s.after {
			close(s.release)
		}
		if s.reject[i] {
			if err := emit.Reject(row[0], "uid="+row[0], "rejected by the test"); err != nil {
				return connector.PullResult{}, err
			}
			continue
		}
		rec.Key, rec.Origin = row[0], "uid="+row[0]
		rec.Names = append(rec.Names[:0], s.names...)
		rec.Values = append(rec.Values[:0], row...)
		if err := emit.Record(&rec); err != nil {
			return connector.PullResult{}, err
		}
	}
	if s.after >= len(s.rows) {
		close(s.release)
	}
	return connector.PullResult{Identity: "rows", Complete: true}, nil
}

// TestIndexLoadsDuringPull: the records a source hands over while the index
// loads are held and decided once it is complete, exactly as if it had been
// loaded first: an unchanged rerun maps nothing and changes nothing,
// however many batches were held, and a failed load fails the run with the
// state's error and commits nothing.
func TestIndexLoadsDuringPull(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	const n = 20000 // 79 batches of 256: more than the engine holds
	tests := []struct {
		name   string
		after  int          // records handed over before the load may go on
		reject map[int]bool // rows rejected by the source while loading
		fail   error
	}{
		{name: "released at once", after: 0},
		{name: "a few batches held", after: 1000},
		{name: "hold full, then the source waits", after: n},
		{name: "a rejection while loading", after: n, reject: map[int]bool{700: true}},
		{name: "the load fails", after: 3000, fail: errors.New("state: disk on fire")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHashRig(t)
			h.src.rows = h.src.rows[:0]
			for i := range n {
				h.src.rows = append(h.src.rows, []string{fmt.Sprintf("k%05d", i), fmt.Sprint("Person ", i), "Buyer", fmt.Sprintf("01 42 %02d %02d %02d", i/10000, i/100%100, i%100), "unmapped"})
			}
			if c, _, _ := h.run(); c.Created != n {
				t.Fatalf("first run: %+v", c)
			}
			release := make(chan struct{})
			src := &releasingSource{rowSource: h.src, after: tt.after, release: release, reject: tt.reject}
			h.job.Source = src
			slow := &slowIndexStore{Store: h.db, release: release, fail: tt.fail}
			if tt.after >= n {
				slow.patience = 100 * time.Millisecond
			}
			h.eng.Store = slow
			count, stop := connector.CountMapped()
			defer stop()
			res, err := h.eng.Run(context.Background(), h.job, connector.RunOptions{Full: true})
			if tt.fail != nil {
				if err == nil || !strings.Contains(err.Error(), "disk on fire") || strings.HasPrefix(err.Error(), "source") {
					t.Fatalf("run error %v, want the state's error", err)
				}
				if res.Run.Status != connector.StatusFailed {
					t.Fatalf("status %s", res.Run.Status)
				}
				h.eng.Store = h.db
				h.job.Source = h.src
				if c, mapped, _ := h.run(); c.Unchanged != n || mapped != 0 {
					t.Fatalf("after the failed run: %+v, %d mapped", c, mapped)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := res.Run.Counts
			want := connector.Counts{Unchanged: n - len(tt.reject), Rejected: len(tt.reject), Source: n - len(tt.reject)}
			if c.Unchanged != want.Unchanged || c.Rejected != want.Rejected || c.Created+c.Updated+c.Deleted+c.Waiting != 0 {
				t.Fatalf("counts %+v, want %+v", c, want)
			}
			if tt.after > 0 && tt.after < n && !slow.released {
				t.Errorf("the source did not run while the index loaded")
			}
			if mapped := count(); mapped != 0 {
				t.Fatalf("%d records mapped: the held records were not checked against the index", mapped)
			}
		})
	}
}

// TestHeldRecordsMatchUnheld: records held while the index loads, in memory
// and past that in the hold file, are decided in the source's order: a run
// of changes, new keys, a vanished key and a key handed over twice (once
// held in memory, once in the file) leaves the same counts and contents as
// the same run with the index loaded first.
func TestHeldRecordsMatchUnheld(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	const n = 20000 // past the 16,384 records held in memory
	rows := func(night int) [][]string {
		var out [][]string
		for i := range n + night*300 {
			title := "Buyer"
			if night > 0 && i%7 == 0 {
				title = "Head buyer"
			}
			if night > 0 && i%11 == 0 {
				continue
			}
			out = append(out, []string{fmt.Sprintf("k%05d", i), fmt.Sprint("Person ", i), title, fmt.Sprintf("01 42 %02d %02d %02d", i/10000, i/100%100, i%100), "unmapped"})
		}
		if night > 0 {
			// k00101 twice: first among the batches held in memory, last
			// in the hold file; the later one is the one that counts.
			out[5000] = []string{"k00101", "Person 101", "Early", "01 42 00 01 01", "unmapped"}
			out[len(out)-1] = []string{"k00101", "Person 101", "Late", "01 42 00 01 01", "unmapped"}
		}
		return out
	}
	type outcome struct {
		counts   connector.Counts
		contacts map[string]connector.Contact
	}
	// run runs the second night; procs 1 loads the index before the pull
	// (no mapping workers, nothing held).
	run := func(t *testing.T, after, procs int) outcome {
		h := newHashRig(t)
		h.job.Mapping = hashMapping(t, "{{.cn}} {{.title}}")
		h.job.Safety.MaxDeletes = n
		h.src.rows = rows(0)
		if c, _, _ := h.run(); c.Created != n {
			t.Fatalf("first run: %+v", c)
		}
		h.src.rows = rows(1)
		if procs > 1 {
			release := make(chan struct{})
			h.job.Source = &releasingSource{rowSource: h.src, after: after, release: release}
			slow := &slowIndexStore{Store: h.db, release: release}
			if after >= len(h.src.rows) {
				slow.patience = 100 * time.Millisecond
			}
			h.eng.Store = slow
		}
		prev := runtime.GOMAXPROCS(procs)
		res, err := h.eng.Run(context.Background(), h.job, connector.RunOptions{Full: true})
		runtime.GOMAXPROCS(prev)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for i := range n + 300 {
			keys = append(keys, fmt.Sprintf("k%05d", i))
		}
		stored, err := h.db.Contacts(context.Background(), h.job.Name, keys)
		if err != nil {
			t.Fatal(err)
		}
		o := outcome{counts: res.Run.Counts, contacts: map[string]connector.Contact{}}
		for k, sc := range stored {
			o.contacts[k] = sc.Contact
		}
		return o
	}
	want := run(t, 0, 1)
	if want.counts.Updated == 0 || want.counts.Created == 0 || want.counts.Deleted == 0 {
		t.Fatalf("the reference run changes too little: %+v", want.counts)
	}
	if got := want.contacts["k00101"][connector.DisplayName]; got != "Person 101 Late" {
		t.Fatalf("k00101 is %q in the reference run, want the later record", got)
	}
	got := run(t, 1<<30, 2)
	if got.counts != want.counts {
		t.Errorf("counts with records held %+v, want %+v", got.counts, want.counts)
	}
	if len(got.contacts) != len(want.contacts) {
		t.Fatalf("%d contacts, want %d", len(got.contacts), len(want.contacts))
	}
	for k, c := range want.contacts {
		if got.contacts[k] != c {
			t.Errorf("%s: %q, want %q", k, got.contacts[k][connector.DisplayName], c[connector.DisplayName])
		}
	}
}
