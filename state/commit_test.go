package state

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// commitRecs commits recs as one run of job and returns the run id.
func commitRecs(t testing.TB, d *DB, job string, recs []connector.ChangeRecord) (int64, error) {
	t.Helper()
	ctx := context.Background()
	id, err := d.StartRun(ctx, connector.Run{Job: job, Kind: "sync"})
	if err != nil {
		t.Fatal(err)
	}
	return id, d.Commit(ctx, &connector.Commit{
		Run:     connector.Run{ID: id, Job: job, Kind: "sync", Status: connector.StatusOK},
		Changes: recordsIter(recs),
	})
}

func recordsIter(recs []connector.ChangeRecord) func(func(*connector.ChangeRecord) error) error {
	return func(yield func(*connector.ChangeRecord) error) error {
		for i := range recs {
			if err := yield(&recs[i]); err != nil {
				return err
			}
		}
		return nil
	}
}

func stored(t testing.TB, d *DB, job, key string) *connector.StoredContact {
	t.Helper()
	m, err := d.Contacts(context.Background(), job, []string{key})
	if err != nil {
		t.Fatal(err)
	}
	return m[key]
}

func TestCommitTransitions(t *testing.T) {
	A, B := mkContact("A"), mkContact("B")
	ha, hb := A.Hash(), B.Hash()
	const k = "k"
	var (
		created     = connector.ChangeRecord{Action: connector.ActionCreate, Key: k, UUID: "u1", New: &A, Applied: true}
		pending     = connector.ChangeRecord{Action: connector.ActionCreate, Key: k, New: &A, Applied: true}
		failed      = connector.ChangeRecord{Action: connector.ActionCreate, Key: k, New: &A, Status: "failed", Reason: "429"}
		heldUpdateB = connector.ChangeRecord{Action: connector.ActionUpdate, Key: k, Old: &A, New: &B, Status: "pending", Reason: "waits for its UUID"}
	)
	entry := func(uuid, status string, h, desired connector.Hash, c, dc connector.Contact) *connector.StoredContact {
		return &connector.StoredContact{Entry: connector.Entry{Key: k, UUID: uuid, Status: status, Hash: h, Desired: desired}, Contact: c, DesiredContact: dc}
	}
	type audit struct {
		uuid, status string
		old          *connector.Contact
	}
	cases := []struct {
		name      string
		before    []connector.ChangeRecord
		change    connector.ChangeRecord
		want      *connector.StoredContact // nil: no entry
		wantAudit audit
	}{
		{"create with uuid is bound", nil, created,
			entry("u1", "bound", ha, connector.Hash{}, A, connector.Contact{}), audit{"u1", "bound", nil}},
		{"create without uuid is pending", nil, pending,
			entry("", "pending", ha, connector.Hash{}, A, connector.Contact{}), audit{"", "pending", nil}},
		{"failed create leaves a failed entry with desired content", nil, failed,
			entry("", "failed", connector.Hash{}, ha, connector.Contact{}, A), audit{"", "failed", nil}},
		{"failed create retried", []connector.ChangeRecord{failed},
			connector.ChangeRecord{Action: connector.ActionCreate, Key: k, UUID: "u1", New: &B, Applied: true},
			entry("u1", "bound", hb, connector.Hash{}, B, connector.Contact{}), audit{"u1", "bound", nil}},
		{"failed create fails again", []connector.ChangeRecord{failed},
			connector.ChangeRecord{Action: connector.ActionCreate, Key: k, New: &B},
			entry("", "failed", connector.Hash{}, hb, connector.Contact{}, B), audit{"", "failed", nil}},
		{"update", []connector.ChangeRecord{created},
			connector.ChangeRecord{Action: connector.ActionUpdate, Key: k, UUID: "u1", Old: &A, New: &B, Applied: true},
			entry("u1", "bound", hb, connector.Hash{}, B, connector.Contact{}), audit{"u1", "bound", &A}},
		{"update without old or uuid takes them from the state", []connector.ChangeRecord{created},
			connector.ChangeRecord{Action: connector.ActionUpdate, Key: k, New: &B, Applied: true},
			entry("u1", "bound", hb, connector.Hash{}, B, connector.Contact{}), audit{"u1", "bound", &A}},
		{"update held back keeps emitted content", []connector.ChangeRecord{pending}, heldUpdateB,
			entry("", "pending", ha, hb, A, B), audit{"", "pending", &A}},
		{"applied update clears desired", []connector.ChangeRecord{created, heldUpdateB},
			connector.ChangeRecord{Action: connector.ActionUpdate, Key: k, UUID: "u1", Old: &A, New: &B, Applied: true},
			entry("u1", "bound", hb, connector.Hash{}, B, connector.Contact{}), audit{"u1", "bound", &A}},
		{"delete", []connector.ChangeRecord{created},
			connector.ChangeRecord{Action: connector.ActionDelete, Key: k, UUID: "u1", Old: &A, Applied: true, Reason: "gone from source"},
			nil, audit{"u1", "deleted", &A}},
		{"delete without old or uuid takes them from the state", []connector.ChangeRecord{created},
			connector.ChangeRecord{Action: connector.ActionDelete, Key: k, Applied: true},
			nil, audit{"u1", "deleted", &A}},
		{"delete not applied keeps the entry", []connector.ChangeRecord{created},
			connector.ChangeRecord{Action: connector.ActionDelete, Key: k, UUID: "u1", Old: &A, Status: "failed", Reason: "503"},
			entry("u1", "bound", ha, connector.Hash{}, A, connector.Contact{}), audit{"u1", "failed", &A}},
		{"delete of an unknown key", nil,
			connector.ChangeRecord{Action: connector.ActionDelete, Key: k, Applied: true},
			nil, audit{"", "deleted", nil}},
		{"bind a pending contact with content", []connector.ChangeRecord{pending},
			connector.ChangeRecord{Action: connector.ActionBind, Key: k, UUID: "u9", New: &B, Applied: true},
			entry("u9", "bound", hb, connector.Hash{}, B, connector.Contact{}), audit{"u9", "bound", &A}},
		{"bind without content keeps emitted content", []connector.ChangeRecord{pending},
			connector.ChangeRecord{Action: connector.ActionBind, Key: k, UUID: "u9", Applied: true},
			entry("u9", "bound", ha, connector.Hash{}, A, connector.Contact{}), audit{"u9", "bound", &A}},
		{"bind keeps a waiting update", []connector.ChangeRecord{pending, heldUpdateB},
			connector.ChangeRecord{Action: connector.ActionBind, Key: k, UUID: "u9", Applied: true},
			entry("u9", "bound", ha, hb, A, B), audit{"u9", "bound", &A}},
		{"bind adopts an unknown key", nil,
			connector.ChangeRecord{Action: connector.ActionBind, Key: k, UUID: "u9", New: &B, Applied: true},
			entry("u9", "bound", hb, connector.Hash{}, B, connector.Contact{}), audit{"u9", "bound", nil}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := openTest(t)
			if _, err := commitRecs(t, d, "j", tc.before); err != nil {
				t.Fatal(err)
			}
			id, err := commitRecs(t, d, "j", []connector.ChangeRecord{tc.change})
			if err != nil {
				t.Fatal(err)
			}
			if got := stored(t, d, "j", k); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("entry\n got %+v\nwant %+v", got, tc.want)
			}
			var entries []connector.Entry
			if err := d.Entries(context.Background(), "j", func(e connector.Entry) error {
				entries = append(entries, e)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if tc.want == nil && len(entries) != 0 || tc.want != nil && (len(entries) != 1 || entries[0] != tc.want.Entry) {
				t.Errorf("Entries %+v, want %+v", entries, tc.want)
			}
			_, changes, _, err := d.RunDetail(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if len(changes) != 1 {
				t.Fatalf("%d audit rows, want 1", len(changes))
			}
			ch := changes[0]
			if got := (audit{ch.UUID, ch.Status, ch.Old}); !reflect.DeepEqual(got, tc.wantAudit) {
				t.Errorf("audit %+v, want %+v", got, tc.wantAudit)
			}
			if ch.Action != tc.change.Action || ch.Applied != tc.change.Applied || ch.Reason != tc.change.Reason ||
				!reflect.DeepEqual(ch.New, tc.change.New) {
				t.Errorf("audit %+v, change %+v", ch, tc.change)
			}
		})
	}
}

// snapshot is everything a failed commit must leave as it was.
type snapshot struct {
	Entries  []connector.Entry
	Contacts map[string]*connector.StoredContact
	Cursor   []byte
	Approved bool
	Journal  []connector.JournalEntry
	Runs     []connector.Run
	Changes  int
	Rejected int
}

func takeSnapshot(t *testing.T, d *DB, job string) snapshot {
	t.Helper()
	ctx := context.Background()
	var s snapshot
	var keys []string
	if err := d.Entries(ctx, job, func(e connector.Entry) error {
		s.Entries = append(s.Entries, e)
		keys = append(keys, e.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.Contacts, err = d.Contacts(ctx, job, keys); err != nil {
		t.Fatal(err)
	}
	if s.Cursor, err = d.Cursor(ctx, job); err != nil {
		t.Fatal(err)
	}
	if s.Approved, err = d.Approved(ctx, job); err != nil {
		t.Fatal(err)
	}
	if s.Journal, err = d.Open(ctx, job); err != nil {
		t.Fatal(err)
	}
	if s.Runs, err = d.Runs(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	if err := d.r.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM changes), (SELECT count(*) FROM rejections)`).Scan(&s.Changes, &s.Rejected); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCommitFailureLeavesStateAsBefore(t *testing.T) {
	ctx := context.Background()
	errBoom := errors.New("boom")
	// Every case starts from the same state and yields these changes
	// (through a broken iterator, a bad change or a cancelled context).
	good := func() []connector.ChangeRecord {
		return []connector.ChangeRecord{
			{Action: connector.ActionUpdate, Key: "k0", UUID: "u0", New: ptr(mkContact("new 0")), Applied: true},
			{Action: connector.ActionDelete, Key: "k1", UUID: "u1", Applied: true},
			{Action: connector.ActionCreate, Key: "k20", New: ptr(mkContact("new 20")), Applied: true},
			{Action: connector.ActionBind, Key: "k2", UUID: "u22", New: ptr(mkContact("bound")), Applied: true},
			{Action: connector.ActionCreate, Key: "k21", New: ptr(mkContact("failed 21"))},
		}
	}
	cases := []struct {
		name     string
		changes  func(yield func(*connector.ChangeRecord) error) error
		rejected func(yield func(connector.Rejection) error) error
		cancel   bool
		want     string
	}{
		{name: "iterator fails after 5 changes", changes: func(yield func(*connector.ChangeRecord) error) error {
			if err := recordsIter(good())(yield); err != nil {
				return err
			}
			return errBoom
		}, want: "changes after 5: boom"},
		{name: "bad change in the middle", changes: recordsIter(append(good()[:3],
			connector.ChangeRecord{Action: connector.ActionBind, Key: "k3", Applied: true})),
			want: `change 4 (bind of key "k3"): bind without a UUID`},
		{name: "unknown action", changes: recordsIter(append(good(),
			connector.ChangeRecord{Action: "rename", Key: "k3", Applied: true})),
			want: `unknown action "rename"`},
		{name: "applied create without content", changes: recordsIter(append(good(),
			connector.ChangeRecord{Action: connector.ActionCreate, Key: "k3", Applied: true})),
			want: "applied without new content"},
		{name: "rejection iterator fails", changes: recordsIter(good()), rejected: func(yield func(connector.Rejection) error) error {
			if err := yield(connector.Rejection{Key: "r1", Reason: "no display name"}); err != nil {
				return err
			}
			return errBoom
		}, want: "rejections after 1: boom"},
		{name: "context cancelled", changes: recordsIter(good()), cancel: true, want: "context canceled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := openTest(t)
			var setup []connector.ChangeRecord
			for i := range 10 {
				setup = append(setup, connector.ChangeRecord{Action: connector.ActionCreate, Key: fmt.Sprintf("k%d", i),
					UUID: fmt.Sprintf("u%d", i), New: ptr(mkContact(fmt.Sprint("contact ", i))), Applied: true})
			}
			id, err := d.StartRun(ctx, connector.Run{Job: "j"})
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Commit(ctx, &connector.Commit{Run: connector.Run{ID: id, Job: "j", Status: connector.StatusOK},
				Changes: recordsIter(setup), Cursor: []byte("c1"), SetCursor: true,
				Rejected: func(yield func(connector.Rejection) error) error {
					return yield(connector.Rejection{Key: "x", Reason: "bad"})
				},
			}); err != nil {
				t.Fatal(err)
			}
			if err := d.Approve(ctx, "j", "alice"); err != nil {
				t.Fatal(err)
			}
			if err := d.Intend(ctx, "j", []connector.JournalEntry{{RunID: 2, Key: "k20", Op: connector.ActionCreate, Contact: mkContact("new 20")}}); err != nil {
				t.Fatal(err)
			}
			id, err = d.StartRun(ctx, connector.Run{Job: "j"})
			if err != nil {
				t.Fatal(err)
			}
			before := takeSnapshot(t, d, "j")
			if len(before.Entries) != 10 || !before.Approved || len(before.Journal) != 1 || string(before.Cursor) != "c1" {
				t.Fatalf("setup: %+v", before)
			}

			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if tc.cancel {
				cancel()
			}
			err = d.Commit(cctx, &connector.Commit{
				Run:     connector.Run{ID: id, Job: "j", Status: connector.StatusOK, Counts: connector.Counts{Created: 1}},
				Changes: tc.changes, Rejected: tc.rejected,
				Cursor: []byte("c2"), SetCursor: true, ConsumeApproval: true, KeepDays: 1,
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), `job "j"`) {
				t.Errorf("error %v does not name the job", err)
			}
			if !reflect.DeepEqual(takeSnapshot(t, d, "j"), before) {
				t.Errorf("state changed by a failed commit\nbefore %+v\n after %+v", before, takeSnapshot(t, d, "j"))
			}
		})
	}
}

func TestRunDetailRoundTrip(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t)
	var odd connector.Contact
	values := []string{`Zoë "the boss" O'Brien`, "line one\nline two", "Ñandú, São Paulo", "tab\there", `back\slash`,
		"<b>&amp;</b>", "emoji 📞", "crlf\r\n", "", " leading and trailing "}
	for i := range odd {
		odd[i] = values[i%len(values)]
	}
	plain := mkContact("plain")
	run := connector.Run{Job: "suppliers", Kind: "sync", StartedAt: t0, FinishedAt: t0.Add(90 * time.Second), Status: connector.StatusOK,
		Counts:     connector.Counts{Created: 1, Updated: 1, Deleted: 1, Unchanged: 5, Rejected: 2, Adopted: 1, Waiting: 1, Source: 9},
		ConfigHash: "sha256:abc", Source: "drop-2025-03-14.csv sha256:…", Files: []string{"suppliers-7-import-001.csv", "suppliers-7-delete.csv"},
		Trigger: "cli", Reason: ""}
	id, err := d.StartRun(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	run.ID = id
	changes := []connector.ChangeRecord{
		{Action: connector.ActionCreate, Key: "k1", UUID: "u1", Status: "bound", New: &odd, Applied: true},
		{Action: connector.ActionUpdate, Key: "k1", UUID: "u1", Status: "bound", Old: &odd, New: &plain, Applied: true},
		{Action: connector.ActionBind, Key: "k2", UUID: "u2", Status: "bound", New: &odd, Applied: true, Reason: "adopted"},
		{Action: connector.ActionUpdate, Key: "k2", UUID: "u2", Status: "failed", Old: &odd, New: &plain, Reason: "400: \"bad\"\nphone"},
		{Action: connector.ActionDelete, Key: "k1", UUID: "u1", Status: "deleted", Old: &plain, Applied: true, Reason: "gone from source"},
	}
	rejected := []connector.Rejection{
		{Key: "Ü-1", Origin: "drop.csv:12", Reason: `no display name ("")`},
		{Key: "k\n2", Reason: "phone 1: invalid number \"+33 x\""},
	}
	c := &connector.Commit{Run: run, Changes: recordsIter(changes), Rejected: func(yield func(connector.Rejection) error) error {
		for _, r := range rejected {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	}}
	if err := d.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	gotRun, gotChanges, gotRejected, err := d.RunDetail(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !gotRun.StartedAt.Equal(run.StartedAt) || !gotRun.FinishedAt.Equal(run.FinishedAt) {
		t.Errorf("times %v %v, want %v %v", gotRun.StartedAt, gotRun.FinishedAt, run.StartedAt, run.FinishedAt)
	}
	gotRun.StartedAt, gotRun.FinishedAt = run.StartedAt, run.FinishedAt
	if !reflect.DeepEqual(gotRun, run) {
		t.Errorf("run\n got %+v\nwant %+v", gotRun, run)
	}
	if !reflect.DeepEqual(gotChanges, changes) {
		t.Errorf("changes\n got %+v\nwant %+v", gotChanges, changes)
	}
	if !reflect.DeepEqual(gotRejected, rejected) {
		t.Errorf("rejected\n got %+v\nwant %+v", gotRejected, rejected)
	}
	fields := connector.Diff(gotChanges[1].Old, gotChanges[1].New)
	if len(fields) == 0 {
		t.Error("no field differs between old and new of an update")
	}
}

func TestRetention(t *testing.T) {
	ctx := context.Background()
	d, clk := openTest(t)
	day := 24 * time.Hour
	commitAt := func(at time.Time, keepDays int) int64 {
		t.Helper()
		clk.t = at
		id, err := d.StartRun(ctx, connector.Run{Job: "j"})
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprint("k", id)
		err = d.Commit(ctx, &connector.Commit{Run: connector.Run{ID: id, Job: "j", Status: connector.StatusOK}, KeepDays: keepDays,
			Changes: recordsIter([]connector.ChangeRecord{{Action: connector.ActionCreate, Key: key, New: ptr(mkContact(key)), Applied: true}}),
			Rejected: func(yield func(connector.Rejection) error) error {
				return yield(connector.Rejection{Key: "r" + key, Reason: "bad"})
			}})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	r1 := commitAt(t0, 0)
	r2 := commitAt(t0.Add(6*day), 0)
	r3 := commitAt(t0.Add(11*day), 5) // prunes runs started before t0+6d

	for _, tc := range []struct {
		id     int64
		detail bool
	}{{r1, false}, {r2, true}, {r3, true}} {
		t.Run(fmt.Sprint("run ", tc.id), func(t *testing.T) {
			run, changes, rejected, err := d.RunDetail(ctx, tc.id)
			if err != nil {
				t.Fatalf("run row must stay: %v", err)
			}
			if run.Status != connector.StatusOK {
				t.Errorf("status %q", run.Status)
			}
			if got := len(changes) == 1 && len(rejected) == 1; got != tc.detail {
				t.Errorf("%d changes, %d rejections; want detail kept: %v", len(changes), len(rejected), tc.detail)
			}
		})
	}
	// Pruning drops the audit, never the entries.
	if sc := stored(t, d, "j", fmt.Sprint("k", r1)); sc == nil || sc.Status != "pending" {
		t.Errorf("entry of a pruned run: %+v", sc)
	}
}

func TestEntriesCallbackMayUseTheDB(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t)
	var recs []connector.ChangeRecord
	const n = 1200 // more than one Contacts batch
	for i := range n {
		key := fmt.Sprintf("key-%04d", i)
		recs = append(recs, connector.ChangeRecord{Action: connector.ActionCreate, Key: key, UUID: "u" + key, New: ptr(mkContact(key)), Applied: true})
	}
	if _, err := commitRecs(t, d, "j", recs); err != nil {
		t.Fatal(err)
	}
	var keys []string
	seen := 0
	err := d.Entries(ctx, "j", func(e connector.Entry) error {
		keys = append(keys, e.Key)
		if seen++; seen == 1 {
			// A read and a write while the scan is open.
			if m, err := d.Contacts(ctx, "j", []string{e.Key}); err != nil || m[e.Key] == nil {
				return fmt.Errorf("contacts: %v %v", m, err)
			}
			if _, err := d.StartRun(ctx, connector.Run{Job: "j"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != n || keys[0] != "key-0000" || keys[n-1] != fmt.Sprintf("key-%04d", n-1) {
		t.Fatalf("Entries gave %d keys", len(keys))
	}
	m, err := d.Contacts(ctx, "j", append(keys, "missing-1", "missing-2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != n || m["key-0042"].Contact != mkContact("key-0042") || m["key-0042"].UUID != "ukey-0042" {
		t.Fatalf("Contacts gave %d contacts", len(m))
	}
	errStop := errors.New("stop")
	if err := d.Entries(ctx, "j", func(connector.Entry) error { return errStop }); !errors.Is(err, errStop) {
		t.Errorf("callback error %v not returned", err)
	}
}

func TestCommitWithoutStartRun(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t)
	c := &connector.Commit{Run: connector.Run{Job: "j", Kind: "reconcile", Status: connector.StatusOK},
		Changes: recordsIter([]connector.ChangeRecord{{Action: connector.ActionBind, Key: "k", UUID: "u", Applied: true}})}
	if err := d.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.Run.ID == 0 {
		t.Fatal("run id not set")
	}
	run, changes, _, err := d.RunDetail(ctx, c.Run.ID)
	if err != nil || run.Kind != "reconcile" || len(changes) != 1 {
		t.Fatalf("run %+v changes %+v err %v", run, changes, err)
	}
	cur, err := d.Cursor(ctx, "j")
	if err != nil || cur != nil {
		t.Fatalf("cursor %q %v, want none", cur, err)
	}
}
