package csvdrop

import (
	"context"
	"strings"
	"testing"
)

// A BOM at the start of a line (two files concatenated) or a zero-width
// space in a key once made a new key: the contact it looked like was
// deleted and a twin created. Such a key is rejected under the key it
// looks like, so the stored contact stays as it was.
func TestInvisibleCharacterInKey(t *testing.T) {
	tests := []struct {
		name, row, wantKey, wantReason string
	}{
		{"BOM at line start", "\ufeff3,Three", "3", "U+FEFF"},
		{"zero-width space", "3\u200b,Three", "3", "U+200B"},
		{"NUL", "3\x00,Three", "3", "U+0000"},
		{"only invisible", "\u200b,Nobody", "", "U+200B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := "id,name\n1,One\n" + tt.row + "\n"
			var rec recorder
			opt := &readOptions{key: "id", keyLabel: "id", delimiter: ',', encoding: "utf-8"}
			st, err := readFile(context.Background(), "drop.csv", strings.NewReader(in), opt, 0, &rec)
			if err != nil {
				t.Fatal(err)
			}
			if st.records != 1 || st.rejected != 1 || len(rec.rejects) != 1 || rec.rejects[0] != tt.wantKey {
				t.Fatalf("records %d rejected %d keys %q, want 1 record and %q rejected\n%s", st.records, st.rejected, rec.rejects, tt.wantKey, rec.b.String())
			}
			if !strings.Contains(rec.b.String(), tt.wantReason) || !strings.Contains(rec.b.String(), "drop.csv:3") {
				t.Errorf("rejection lacks %q or its line:\n%s", tt.wantReason, rec.b.String())
			}
		})
	}
}
