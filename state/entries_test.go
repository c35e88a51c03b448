package state

import (
	"context"
	"strings"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

// TestEntriesSplitsItsRow reads entries of every shape through Entries'
// packed row and compares them with what Contacts reads column by column.
func TestEntriesSplitsItsRow(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t)
	long := strings.Repeat("é", 200) // 400 bytes: a length that does not fit a byte
	recs := []connector.ChangeRecord{
		{Action: connector.ActionCreate, Key: "bound", UUID: "u1", New: ptr(mkContact("A")), Applied: true, SourceHash: connector.Hash{7}},
		{Action: connector.ActionCreate, Key: "pending", New: ptr(mkContact("B")), Applied: true},
		{Action: connector.ActionCreate, Key: "failed", New: ptr(mkContact("C")), Reason: "429"},
		{Action: connector.ActionCreate, Key: long, UUID: long, New: ptr(mkContact("D")), Applied: true},
		{Action: connector.ActionUpdate, Key: "pending", New: ptr(mkContact("B2")), Status: "pending", Reason: "waits"},
		{Action: connector.ActionCreate, Key: "k\x00nul", UUID: "u\x00", New: ptr(mkContact("E")), Applied: true},
	}
	if _, err := commitRecs(t, d, "j", recs); err != nil {
		t.Fatal(err)
	}
	var got []connector.Entry
	if err := d.Entries(ctx, "j", func(e connector.Entry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	keys := []string{"bound", "failed", "k\x00nul", "pending", long}
	if len(got) != len(keys) {
		t.Fatalf("%d entries, want %d", len(got), len(keys))
	}
	stored, err := d.Contacts(ctx, "j", keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range keys {
		t.Run(key[:min(len(key), 10)], func(t *testing.T) {
			if got[i].Key != key {
				t.Fatalf("entry %d has key %q, want %q", i, got[i].Key, key)
			}
			if sc := stored[key]; sc == nil || got[i] != sc.Entry {
				t.Errorf("Entries gives %+v, Contacts %+v", got[i], sc)
			}
		})
	}
	if got[0].SourceHash != (connector.Hash{7}) || got[3].Desired.IsZero() || got[3].Status != "pending" {
		t.Errorf("entries %+v", got)
	}
}

func TestEntriesBadHash(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ column, want string }{
		{"hash", `state: entry "k" of job "j": hash: hash of 3 bytes, want 16`},
		{"desired_hash", `state: entry "k" of job "j": desired hash: hash of 3 bytes, want 16`},
		{"source_hash", `state: entry "k" of job "j": source hash: hash of 3 bytes, want 16`},
	} {
		t.Run(tc.column, func(t *testing.T) {
			d, _ := openTest(t)
			if _, err := commitRecs(t, d, "j", []connector.ChangeRecord{{Action: connector.ActionCreate, Key: "k", UUID: "u",
				New: ptr(mkContact("A")), Applied: true}}); err != nil {
				t.Fatal(err)
			}
			if _, err := d.w.ExecContext(ctx, `UPDATE entries SET `+tc.column+` = x'010203'`); err != nil {
				t.Fatal(err)
			}
			err := d.Entries(ctx, "j", func(connector.Entry) error { return nil })
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
