package webexapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

var update_ = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestBodyGolden pins the exact JSON of bulk items: a create, and updates
// that change a number, clear fields and drop the groups.
func TestBodyGolden(t *testing.T) {
	const uuid = "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	c := full()
	changed := c
	changed[connector.Phone1] = "+33140000099"
	changed[connector.Phone2], changed[connector.Phone2Type] = "", ""
	changed[connector.Email] = "new@acme.example"
	changed[connector.Title] = ""
	changed[connector.Group1] = ""
	for _, tc := range []struct {
		name string
		body bulkBody
	}{
		{"create", bulkBody{Schemas: Schema, Contacts: []*contactBody{buildBody("", &c, nil)}}},
		{"update", bulkBody{Schemas: Schema, Contacts: []*contactBody{buildBody(uuid, &changed, &c)}}},
		{"unchanged_update", bulkBody{Schemas: Schema, Contacts: []*contactBody{buildBody(uuid, &c, &c)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.MarshalIndent(tc.body, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", tc.name+".json")
			if *update_ {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the golden file:\n%s", path, got)
			}
		})
	}
}
