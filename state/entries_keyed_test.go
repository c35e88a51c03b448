package state

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

// TestEntryLookup: the entries an incremental run looks up by key, those
// whose content waits, and the counts of the deletion guard are what
// Entries gives for the same keys, after a run that left entries of every
// status, with keys the state does not hold and a key asked for twice.
func TestEntryLookup(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t)
	var recs []connector.ChangeRecord
	for i := range 1200 { // more keys than one look-up query takes
		c := mkContact(fmt.Sprint("c ", i))
		recs = append(recs, connector.ChangeRecord{Action: connector.ActionCreate, Key: fmt.Sprintf("k%04d", i), New: &c, Applied: true})
	}
	// A failed create and a held update: their content waits.
	recs = append(recs,
		connector.ChangeRecord{Action: connector.ActionCreate, Key: "failed", New: ptr(mkContact("failed")), Reason: "500"},
		connector.ChangeRecord{Action: connector.ActionUpdate, Key: "k0007", New: ptr(mkContact("held")), Reason: "held"})
	if _, err := commitRecs(t, d, "j", recs); err != nil {
		t.Fatal(err)
	}
	if _, err := commitRecs(t, d, "other", recs[:3]); err != nil {
		t.Fatal(err)
	}
	all := map[string]connector.Entry{}
	if err := d.Entries(ctx, "j", func(e connector.Entry) error { all[e.Key] = e; return nil }); err != nil {
		t.Fatal(err)
	}

	var keys []string
	for i := 0; i < 1200; i += 2 {
		keys = append(keys, fmt.Sprintf("k%04d", i))
	}
	keys = append(keys, "failed", "absent", "k0000")
	got := map[string]connector.Entry{}
	if err := d.EntriesByKey(ctx, "j", keys, func(e connector.Entry) error { got[e.Key] = e; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 601 {
		t.Errorf("%d entries by key, want 601", len(got))
	}
	for k, e := range got {
		if all[k] != e {
			t.Errorf("%s: by key %+v, Entries %+v", k, e, all[k])
		}
	}

	var waiting []string
	if err := d.EntriesWaiting(ctx, "j", func(e connector.Entry) error {
		if all[e.Key] != e {
			t.Errorf("%s: waiting %+v, Entries %+v", e.Key, e, all[e.Key])
		}
		waiting = append(waiting, e.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(waiting)
	if !slices.Equal(waiting, []string{"failed", "k0007"}) {
		t.Errorf("waiting %v, want [failed k0007]", waiting)
	}

	n, managed, err := d.EntryCounts(ctx, "j")
	if err != nil || n != 1201 || managed != 1200 {
		t.Errorf("counts %d, %d (%v), want 1201 entries, 1200 managed", n, managed, err)
	}
}

// TestMigrateV3ToV4: a file of schema version 3 gets the index of waiting
// entries, and its waiting entries are found through it.
func TestMigrateV3ToV4(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	makeV2(t, path, migrations[2]+`; UPDATE schema_version SET version = 3;
		UPDATE entries SET desired_hash = x'02000000000000000000000000000000', desired = contact WHERE key = 'b'`)
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// INDEXED BY fails the query when the index is missing.
	var keys []string
	if err := d.EntriesWaiting(ctx, "j", func(e connector.Entry) error { keys = append(keys, e.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"b"}) {
		t.Errorf("waiting after the upgrade: %v, want [b]", keys)
	}
}
