package state

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

// TestSourceHashTransitions commits changes one after another on one key
// and checks the stored source hash and the audit after each.
func TestSourceHashTransitions(t *testing.T) {
	A, B := mkContact("A"), mkContact("B")
	s1, s2 := connector.Hash{1}, connector.Hash{2}
	const k = "k"
	steps := []struct {
		name    string
		rec     connector.ChangeRecord
		want    connector.Hash
		audited int
	}{
		{"applied create stores it", connector.ChangeRecord{Action: connector.ActionCreate, Key: k, New: &A, Applied: true, SourceHash: s1}, s1, 1},
		{"touch replaces it without audit", connector.ChangeRecord{Action: connector.ActionTouch, Key: k, Applied: true, SourceHash: s2}, s2, 0},
		{"held update clears it", connector.ChangeRecord{Action: connector.ActionUpdate, Key: k, Old: &A, New: &B, Status: "pending", Reason: "waits"}, connector.Hash{}, 1},
		{"reconcile bind keeps the content and the hash", connector.ChangeRecord{Action: connector.ActionBind, Key: k, UUID: "u1", Applied: true}, connector.Hash{}, 1},
		{"applied update stores it", connector.ChangeRecord{Action: connector.ActionUpdate, Key: k, UUID: "u1", Old: &A, New: &B, Applied: true, SourceHash: s1}, s1, 1},
		{"failed update clears it", connector.ChangeRecord{Action: connector.ActionUpdate, Key: k, UUID: "u1", Old: &B, New: &A, Status: "failed", Reason: "500"}, connector.Hash{}, 1},
		{"update without a source hash stores none", connector.ChangeRecord{Action: connector.ActionUpdate, Key: k, UUID: "u1", Old: &B, New: &A, Applied: true}, connector.Hash{}, 1},
		{"adoption bind sets it", connector.ChangeRecord{Action: connector.ActionBind, Key: k, UUID: "u2", New: &B, Applied: true, SourceHash: s2}, s2, 1},
		{"bind without content keeps it", connector.ChangeRecord{Action: connector.ActionBind, Key: k, UUID: "u3", Applied: true}, s2, 1},
	}
	d, _ := openTest(t)
	ctx := context.Background()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			id, err := commitRecs(t, d, "j", []connector.ChangeRecord{st.rec})
			if err != nil {
				t.Fatal(err)
			}
			if sc := stored(t, d, "j", k); sc == nil || sc.SourceHash != st.want {
				t.Errorf("stored %+v, want source hash %s", sc, st.want)
			}
			var got connector.Hash
			if err := d.Entries(ctx, "j", func(e connector.Entry) error { got = e.SourceHash; return nil }); err != nil || got != st.want {
				t.Errorf("Entries: source hash %s (%v), want %s", got, err, st.want)
			}
			if _, changes, _, err := d.RunDetail(ctx, id); err != nil || len(changes) != st.audited {
				t.Errorf("audit: %d rows (%v), want %d", len(changes), err, st.audited)
			}
		})
	}
	t.Run("touch without a hash is refused", func(t *testing.T) {
		if _, err := commitRecs(t, d, "j", []connector.ChangeRecord{{Action: connector.ActionTouch, Key: k, Applied: true}}); err == nil {
			t.Error("committed")
		}
	})
}

// TestMigrateAddsSourceHash opens a file of schema version 1: its entries
// are kept, with no source hash.
func TestMigrateAddsSourceHash(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	raw, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	a := mkContact("A")
	h := a.Hash()
	for _, q := range []string{migrations[0],
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`,
		`INSERT INTO schema_version (version) VALUES (1)`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.ExecContext(ctx, `INSERT INTO entries (job, key, uuid, status, hash, contact) VALUES ('j', 'k', 'u1', 'bound', ?, '[]')`, h[:]); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var got []connector.Entry
	if err := d.Entries(ctx, "j", func(e connector.Entry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Hash != h || !got[0].SourceHash.IsZero() || got[0].UUID != "u1" {
		t.Errorf("entries after the migration: %+v", got)
	}
}
