package state

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// TestCommitBatchedCreatesMixed commits more than two batches of creates
// with every other kind of change in between, so that creates are queued,
// flushed by the changes after them, and left as a remainder at the end;
// once with the new keys ascending (each appended to entries at once) and
// once out of order (held until a statement needs them, then moved in key
// order: apply_order.go).
func TestCommitBatchedCreatesMixed(t *testing.T) {
	orders := []struct {
		name  string
		keyOf func(i int) string
	}{
		{"ascending", func(i int) string { return fmt.Sprintf("n%03d", i) }},
		// 67 and 150 are coprime: every key once, in no order.
		{"out of order", func(i int) string { return fmt.Sprintf("n%03d", i*67%150) }},
	}
	for _, o := range orders {
		t.Run(o.name, func(t *testing.T) { testBatchedCreatesMixed(t, o.keyOf) })
	}
}

func testBatchedCreatesMixed(t *testing.T, keyOf func(i int) string) {
	ctx := context.Background()
	d, _ := openTest(t)
	var setup []connector.ChangeRecord
	for i := range 10 {
		setup = append(setup, connector.ChangeRecord{Action: connector.ActionCreate, Key: fmt.Sprintf("k%d", i),
			UUID: fmt.Sprintf("u%d", i), New: ptr(mkContact(fmt.Sprint("old ", i))), Applied: true})
	}
	// k9 is a failed create: its retry in a batch must replace it.
	setup[9] = connector.ChangeRecord{Action: connector.ActionCreate, Key: "k9", New: ptr(mkContact("failed 9")), Reason: "429"}
	if _, err := commitRecs(t, d, "j", setup); err != nil {
		t.Fatal(err)
	}

	type want struct {
		uuid, status string
		contact      connector.Contact
	}
	wantEntries := map[string]want{}
	for i := range 9 {
		wantEntries[fmt.Sprintf("k%d", i)] = want{fmt.Sprintf("u%d", i), "bound", mkContact(fmt.Sprint("old ", i))}
	}
	var recs []connector.ChangeRecord
	add := func(r connector.ChangeRecord) { recs = append(recs, r) }
	src := connector.Hash{1, 2, 3}
	for i := range 150 {
		key := keyOf(i)
		c := mkContact(fmt.Sprint("new ", i))
		uuid, status := "", "pending"
		if i%3 == 0 {
			uuid, status = fmt.Sprint("nu", i), "bound"
		}
		add(connector.ChangeRecord{Action: connector.ActionCreate, Key: key, UUID: uuid, New: &c, Applied: true, SourceHash: src})
		wantEntries[key] = want{uuid, status, c}
		switch i {
		case 10: // the same key twice in one batch: the later create wins
			c2 := mkContact("new 10 again")
			add(connector.ChangeRecord{Action: connector.ActionCreate, Key: key, UUID: "again", New: &c2, Applied: true})
			wantEntries[key] = want{"again", "bound", c2}
		case 20: // an update of a create still queued: it must see it
			c2 := mkContact("new 20 updated")
			add(connector.ChangeRecord{Action: connector.ActionUpdate, Key: key, New: &c2, Applied: true})
			wantEntries[key] = want{"", "pending", c2}
		case 30:
			add(connector.ChangeRecord{Action: connector.ActionDelete, Key: "k1", UUID: "u1", Reason: "gone", Applied: true})
			delete(wantEntries, "k1")
		case 40:
			add(connector.ChangeRecord{Action: connector.ActionTouch, Key: keyOf(5), SourceHash: connector.Hash{9}})
		case 70: // a conflict inside a batch: the failed create of setup is replaced
			c9 := mkContact("retried 9")
			add(connector.ChangeRecord{Action: connector.ActionCreate, Key: "k9", UUID: "u9", New: &c9, Applied: true})
			wantEntries["k9"] = want{"u9", "bound", c9}
		case 100:
			c2 := mkContact("bound 2")
			add(connector.ChangeRecord{Action: connector.ActionBind, Key: "k2", UUID: "u2b", New: &c2, Applied: true})
			wantEntries["k2"] = want{"u2b", "bound", c2}
		case 140: // the last 9 creates are a remainder
			add(connector.ChangeRecord{Action: connector.ActionCreate, Key: "f1", New: ptr(mkContact("failed f1")), Reason: "500"})
		}
	}
	id, err := commitRecs(t, d, "j", recs)
	if err != nil {
		t.Fatal(err)
	}

	var keys []string
	entries := map[string]connector.Entry{}
	if err := d.Entries(ctx, "j", func(e connector.Entry) error {
		keys = append(keys, e.Key)
		entries[e.Key] = e
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := d.Contacts(ctx, "j", keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(wantEntries)+1 {
		t.Errorf("%d entries, want %d", len(got), len(wantEntries)+1)
	}
	for key, w := range wantEntries {
		t.Run(key, func(t *testing.T) {
			sc := got[key]
			if sc == nil {
				t.Fatal("no entry")
			}
			if sc.UUID != w.uuid || sc.Status != w.status || sc.Contact != w.contact || sc.Hash != w.contact.Hash() || !sc.Desired.IsZero() {
				t.Errorf("entry %+v, want %+v", sc, w)
			}
			if entries[key] != sc.Entry {
				t.Errorf("Entries gives %+v, Contacts %+v", entries[key], sc.Entry)
			}
		})
	}
	if e := entries[keyOf(5)]; e.SourceHash != (connector.Hash{9}) {
		t.Errorf("touched source hash %x", e.SourceHash)
	}
	if e := entries[keyOf(6)]; e.SourceHash != src {
		t.Errorf("created source hash %x", e.SourceHash)
	}
	if f := got["f1"]; f == nil || f.Status != "failed" || f.DesiredContact != mkContact("failed f1") {
		t.Errorf("failed create: %+v", f)
	}

	_, changes, _, err := d.RunDetail(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var wantChanges []string
	for _, r := range recs {
		if r.Action != connector.ActionTouch {
			wantChanges = append(wantChanges, string(r.Action)+" "+r.Key)
		}
	}
	var gotChanges []string
	for _, c := range changes {
		gotChanges = append(gotChanges, string(c.Action)+" "+c.Key)
	}
	if !reflect.DeepEqual(gotChanges, wantChanges) {
		t.Errorf("audit order:\n got %v\nwant %v", gotChanges, wantChanges)
	}
	for _, c := range changes {
		switch {
		case c.Action == connector.ActionUpdate && c.Key == keyOf(20):
			if c.Old == nil || *c.Old != mkContact("new 20") {
				t.Errorf("update of a queued create: old %v", c.Old)
			}
		case c.Action == connector.ActionDelete:
			if c.Old == nil || *c.Old != mkContact("old 1") || c.UUID != "u1" {
				t.Errorf("delete: %+v", c)
			}
		case c.Action == connector.ActionBind:
			if c.Old == nil || *c.Old != mkContact("old 2") {
				t.Errorf("bind: old %v", c.Old)
			}
		case c.Action == connector.ActionCreate && c.Applied:
			if c.New == nil || c.Old != nil {
				t.Errorf("create %s: %+v", c.Key, c)
			}
		}
	}
}

// TestCommitFailureInBatch fails one create inside a full batch (a trigger
// stands for any error of SQLite's): the error names that change, or counts
// the creates that waited for key order, and nothing of the run is stored.
func TestCommitFailureInBatch(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, failKey string
		n             int
		descending    bool // every create after the first waits for key order (apply_order.go)
		want          string
	}{
		{"full batch", "c0100", 200, false, `change 101 (create of key "c0100"): boom`},
		{"remainder", "c0195", 200, false, `change 196 (create of key "c0195"): boom`},
		{"first change", "c0000", 70, false, `change 1 (create of key "c0000"): boom`},
		// The creates that waited go in with one statement: its error
		// counts them, and the run stores nothing either.
		{"out of order", "c0100", 200, true, `199 creates out of key order: boom`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := openTest(t)
			if _, err := commitRecs(t, d, "j", benchRecords(5)); err != nil {
				t.Fatal(err)
			}
			if _, err := d.w.ExecContext(ctx, `CREATE TRIGGER fail BEFORE INSERT ON entries WHEN NEW.key = '`+tc.failKey+`'
				BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
				t.Fatal(err)
			}
			before := takeSnapshot(t, d, "j")
			var recs []connector.ChangeRecord
			for i := range tc.n {
				k := i
				if tc.descending {
					k = tc.n - 1 - i
				}
				c := mkContact(fmt.Sprint("c ", k))
				recs = append(recs, connector.ChangeRecord{Action: connector.ActionCreate, Key: fmt.Sprintf("c%04d", k), New: &c, Applied: true})
			}
			_, err := commitRecs(t, d, "j", recs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			after := takeSnapshot(t, d, "j")
			// The run StartRun recorded is the only difference.
			after.Runs = after.Runs[1:]
			if !reflect.DeepEqual(after, before) {
				t.Errorf("state changed by a failed commit\nbefore %+v\n after %+v", before, after)
			}
		})
	}
}

// TestRetentionKeepsSharedContents prunes the audit rows that hold the
// contents of entries: the entries keep their contents.
func TestRetentionKeepsSharedContents(t *testing.T) {
	ctx := context.Background()
	d, clk := openTest(t)
	old := benchRecords(70)
	if _, err := commitRecs(t, d, "j", old); err != nil {
		t.Fatal(err)
	}
	// Another job's entry with the same key must not take anything.
	if _, err := commitRecs(t, d, "other", []connector.ChangeRecord{{Action: connector.ActionCreate, Key: old[0].Key, New: ptr(mkContact("other")), Applied: true}}); err != nil {
		t.Fatal(err)
	}
	clk.t = t0.Add(30 * 24 * time.Hour)
	id, err := d.StartRun(ctx, connector.Run{Job: "j"})
	if err != nil {
		t.Fatal(err)
	}
	upd := mkContact("updated 1")
	if err := d.Commit(ctx, &connector.Commit{Run: connector.Run{ID: id, Job: "j", Status: connector.StatusOK}, KeepDays: 10,
		Changes: recordsIter([]connector.ChangeRecord{{Action: connector.ActionUpdate, Key: old[1].Key, UUID: old[1].UUID, New: &upd, Applied: true}})}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := d.r.QueryRowContext(ctx, `SELECT count(*) FROM changes`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d audit rows left (%v), want the last run's 1", n, err)
	}
	keys := make([]string, len(old))
	for i := range old {
		keys[i] = old[i].Key
	}
	got, err := d.Contacts(ctx, "j", keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range old {
		want := *r.New
		if i == 1 {
			want = upd
		}
		if sc := got[r.Key]; sc == nil || sc.Contact != want {
			t.Fatalf("entry %s after pruning: %+v, want contact %v", r.Key, sc, want)
		}
	}
	if sc := stored(t, d, "other", old[0].Key); sc == nil || sc.Contact != mkContact("other") {
		t.Errorf("other job's entry: %+v", sc)
	}
	if spans, want := runSpans(t, d), fmt.Sprintf("1:none 2:none %d:72-72", id); spans != want {
		t.Errorf("runs' audit spans after pruning: %s, want %s (pruned runs have none)", spans, want)
	}
}

// runSpans lists every run's span of audit row ids, as "id:first-last",
// or "id:none".
func runSpans(t *testing.T, d *DB) string {
	t.Helper()
	var spans string
	if err := d.r.QueryRow(`SELECT group_concat(id || ':' || coalesce(first_change || '-' || last_change, 'none'), ' ')
		FROM (SELECT * FROM runs ORDER BY id)`).Scan(&spans); err != nil {
		t.Fatal(err)
	}
	return spans
}

// TestChangeSpans: schema version 5 finds a run's audit rows by the span
// of ids its run row records. The upgrade fills the spans in from the
// index it drops; a span that holds another run's rows (ids reused after a
// revert) still gives only the run's own.
func TestChangeSpans(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	c := mkContact("Carol")
	makeV2(t, path, fmt.Sprintf(`INSERT INTO runs (id, job, kind, started_at, finished_at, status, created) VALUES
			(2, 'k', 'sync', '2025-03-15T02:00:00.000000000Z', '2025-03-15T02:00:01.000000000Z', 'ok', 1),
			(3, 'j', 'sync', '2025-03-16T02:00:00.000000000Z', '2025-03-16T02:00:01.000000000Z', 'ok', 0);
		INSERT INTO changes (id, run_id, action, key, applied, new) VALUES (5, 2, 'create', 'c', 1, '%s')`, c.Marshal()))
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var indexes int
	if spans, want := runSpans(t, d), "1:1-2 2:5-5 3:none"; spans != want {
		t.Errorf("spans after the upgrade: %s, want %s", spans, want)
	}
	if err := d.r.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 'changes_run'`).Scan(&indexes); err != nil || indexes != 0 {
		t.Errorf("changes_run still there (%d, %v)", indexes, err)
	}
	// Run 1's span made to cover run 2's row, as a reused id would.
	if _, err := d.w.ExecContext(ctx, `UPDATE runs SET last_change = 5 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		run  int64
		keys string
	}{{1, "a b"}, {2, "c"}, {3, ""}} {
		_, changes, _, err := d.RunDetail(ctx, tc.run)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, ch := range changes {
			keys = append(keys, ch.Key)
		}
		if got := strings.Join(keys, " "); got != tc.keys {
			t.Errorf("run %d: changes of keys %q, want %q", tc.run, got, tc.keys)
		}
	}
	// A run committed now records its own span.
	id, err := commitRecs(t, d, "j", []connector.ChangeRecord{{Action: connector.ActionCreate, Key: "d", New: &c, Applied: true}})
	if err != nil {
		t.Fatal(err)
	}
	var first, last int64
	if err := d.r.QueryRowContext(ctx, `SELECT first_change, last_change FROM runs WHERE id = ?`, id).Scan(&first, &last); err != nil || first != 6 || last != 6 {
		t.Errorf("span of run %d: %d-%d (%v), want 6-6", id, first, last, err)
	}
}

// TestAuditQueriesUseTheIndexes: pruning runs at every commit and show
// reads one run; they must visit the rows of the runs concerned, never
// scan every entry or audit row, nor index them for the query. Without an
// index on changes.run_id (schema version 5) that rests on the spans the
// run rows record.
func TestAuditQueriesUseTheIndexes(t *testing.T) {
	d, _ := openTest(t)
	for _, tc := range []struct {
		name, query string
		arg         any
	}{
		{"keep contents", keepContents, formatTime(t0)},
		{"prune changes", pruneChanges, formatTime(t0)},
		{"run changes", runChangesQuery, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := d.w.Query(`EXPLAIN QUERY PLAN `+tc.query, tc.arg)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			t.Log(strings.Join(plan, "; "))
			for _, step := range plan {
				if strings.HasPrefix(step, "SCAN") && step != "SCAN runs" || strings.Contains(step, "AUTOMATIC") {
					t.Errorf("plan scans a table: %q\n%s", step, strings.Join(plan, "\n"))
				}
			}
		})
	}
}

// makeV2 writes a state file of schema version 2, as the contactsync
// before version 3 left it: one run with two creates, their entries
// holding their contents.
func makeV2(t *testing.T, path string, extra string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, b := mkContact("Alice", "Alice"), mkContact(`Bob "B" <b&b>`, "Bob")
	ha, hb := a.Hash(), b.Hash()
	stmts := []string{migrations[0], migrations[1],
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`,
		`INSERT INTO schema_version (version) VALUES (2)`,
		`INSERT INTO runs (id, job, kind, started_at, finished_at, status, created) VALUES
			(1, 'j', 'sync', '2025-03-14T02:00:00.000000000Z', '2025-03-14T02:00:01.000000000Z', 'ok', 2)`,
		fmt.Sprintf(`INSERT INTO entries (job, key, uuid, status, hash, contact, source_hash) VALUES
			('j', 'a', 'ua', 'bound', x'%x', '%s', x'01000000000000000000000000000000'), ('j', 'b', '', 'pending', x'%x', '%s', NULL)`,
			ha[:], a.Marshal(), hb[:], strings.ReplaceAll(string(b.Marshal()), "'", "''")),
		fmt.Sprintf(`INSERT INTO changes (run_id, action, key, uuid, status, applied, reason, old, new) VALUES
			(1, 'create', 'a', 'ua', 'bound', 1, '', NULL, '%s'), (1, 'create', 'b', '', 'pending', 1, '', NULL, '%s')`,
			a.Marshal(), strings.ReplaceAll(string(b.Marshal()), "'", "''")),
	}
	if extra != "" {
		stmts = append(stmts, extra)
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestMigrateV2ToV3(t *testing.T) {
	ctx := context.Background()
	a, b := mkContact("Alice", "Alice"), mkContact(`Bob "B" <b&b>`, "Bob")
	wantEntries := map[string]*connector.StoredContact{
		"a": {Entry: connector.Entry{Key: "a", UUID: "ua", Status: "bound", Hash: a.Hash(), SourceHash: connector.Hash{1}}, Contact: a},
		"b": {Entry: connector.Entry{Key: "b", Status: "pending", Hash: b.Hash()}, Contact: b},
	}
	wantChanges := []connector.ChangeRecord{
		{Action: connector.ActionCreate, Key: "a", UUID: "ua", Status: "bound", Applied: true, New: &a},
		{Action: connector.ActionCreate, Key: "b", Status: "pending", Applied: true, New: &b},
	}

	t.Run("upgrade keeps every entry and audit row", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		makeV2(t, path, "")
		d, err := Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		var v int
		if err := d.r.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil || v != SchemaVersion() {
			t.Fatalf("schema version %d (%v), want %d", v, err, SchemaVersion())
		}
		got, err := d.Contacts(ctx, "j", []string{"a", "b"})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, wantEntries) {
			t.Errorf("entries after the upgrade:\n got %+v\nwant %+v", got, wantEntries)
		}
		_, changes, _, err := d.RunDetail(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(changes, wantChanges) {
			t.Errorf("audit after the upgrade:\n got %+v\nwant %+v", changes, wantChanges)
		}
		// Entries of both forms: an update reads the old content of one
		// written by version 2, a delete returns it.
		a2 := mkContact("Alice 2")
		id, err := commitRecs(t, d, "j", []connector.ChangeRecord{
			{Action: connector.ActionUpdate, Key: "a", New: &a2, Applied: true},
			{Action: connector.ActionDelete, Key: "b", Applied: true},
			{Action: connector.ActionCreate, Key: "c", New: &b, Applied: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		_, changes, _, err = d.RunDetail(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) != 3 || changes[0].Old == nil || *changes[0].Old != a || changes[1].Old == nil || *changes[1].Old != b {
			t.Errorf("changes after the upgrade: %+v", changes)
		}
		if sc := stored(t, d, "j", "a"); sc == nil || sc.Contact != a2 || sc.UUID != "ua" {
			t.Errorf("updated entry: %+v", sc)
		}
	})

	t.Run("failed upgrade leaves the file as it was", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		// A column in the way makes version 3's ALTER TABLE fail.
		makeV2(t, path, `ALTER TABLE entries ADD COLUMN contact_ref TEXT`)
		sum := func() string {
			db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var s string
			if err := db.QueryRow(`SELECT (SELECT version FROM schema_version) || ' ' ||
				(SELECT group_concat(key || uuid || status || hex(hash) || contact, ',') FROM entries) || ' ' ||
				(SELECT group_concat(id || action || key || new, ',') FROM changes)`).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		before := sum()
		_, err := Open(ctx, path, nil)
		if err == nil || !strings.Contains(err.Error(), "to version 3") {
			t.Fatalf("error %v, want a failed migration to version 3", err)
		}
		if after := sum(); after != before || !strings.HasPrefix(after, "2 ") {
			t.Errorf("file changed by a failed upgrade:\nbefore %s\n after %s", before, after)
		}
	})
}

// TestCreateUsesEngineHash: a create that carries the contact's hash from
// the engine stores it as is; one without computes it.
func TestCreateUsesEngineHash(t *testing.T) {
	c := mkContact("Ada Lovelace")
	given := connector.Hash{1, 2, 3}
	tests := []struct {
		name string
		hash connector.Hash
		want connector.Hash
	}{
		{"computed", connector.Hash{}, c.Hash()},
		{"from the engine", given, given},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := openTest(t)
			rec := connector.ChangeRecord{Action: connector.ActionCreate, Key: "k1", New: &c, Status: connector.EntryPending, Applied: true, NewHash: tt.hash}
			if _, err := commitRecs(t, d, "job", []connector.ChangeRecord{rec}); err != nil {
				t.Fatal(err)
			}
			var got []connector.Entry
			if err := d.Entries(context.Background(), "job", func(e connector.Entry) error { got = append(got, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Hash != tt.want {
				t.Fatalf("entries %+v, want hash %x", got, tt.want)
			}
		})
	}
}

// TestOutOfOrderCreatesAcrossRuns: the writer connection outlives its runs
// (a daemon), and the temporary table of creates out of key order with it.
// A run rolled back after holding some there leaves nothing behind, and
// the runs after it hold and move their own.
func TestOutOfOrderCreatesAcrossRuns(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t)
	// Keys descending: every create after a run's first waits for the move.
	run := func(prefix string, n int) []connector.ChangeRecord {
		var recs []connector.ChangeRecord
		for i := n - 1; i >= 0; i-- {
			c := mkContact(fmt.Sprint(prefix, i))
			recs = append(recs, connector.ChangeRecord{Action: connector.ActionCreate, Key: fmt.Sprintf("%s%03d", prefix, i),
				New: &c, Applied: true})
		}
		return recs
	}
	if _, err := commitRecs(t, d, "j", run("a", 100)); err != nil {
		t.Fatal(err)
	}
	id, err := d.StartRun(ctx, connector.Run{Job: "j", Kind: "sync"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Stage(ctx, connector.Run{ID: id, Job: "j", Kind: "sync"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, recordsIter(run("b", 100))); err != nil {
		t.Fatal(err)
	}
	if err := st.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := commitRecs(t, d, "j", run("c", 100)); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := d.Entries(ctx, "j", func(e connector.Entry) error {
		keys = append(keys, e.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range []string{"a", "c"} {
		for i := range 100 {
			want = append(want, fmt.Sprintf("%s%03d", p, i))
		}
	}
	slices.Sort(keys)
	if !slices.Equal(keys, want) {
		t.Errorf("%d entries after a run, a rolled back one and a run, want the %d of the committed runs", len(keys), len(want))
	}
	for _, c := range []struct {
		prefix string
		i      int
	}{{"a", 42}, {"c", 0}, {"c", 99}} {
		k := fmt.Sprintf("%s%03d", c.prefix, c.i)
		if sc := stored(t, d, "j", k); sc == nil || sc.Contact != mkContact(fmt.Sprint(c.prefix, c.i)) {
			t.Errorf("%s: %+v", k, sc)
		}
	}
}
