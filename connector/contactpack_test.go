package connector

import (
	"strings"
	"testing"
)

func TestPackContact(t *testing.T) {
	full := func(v string) (c Contact) {
		for i := range c {
			c[i] = v + string(rune('a'+i))
		}
		return c
	}
	var sparse Contact
	sparse[DisplayName], sparse[Email] = "Zoë Ångström", "zoe@example.org"
	tests := []struct {
		name string
		c    Contact
	}{
		{"empty", Contact{}},
		{"sparse", sparse},
		{"every field", full("x")},
		{"long fields (two-byte lengths)", full(strings.Repeat("é", 200))},
		{"a 1 MB field", func() Contact { c := sparse; c[Title] = strings.Repeat("t", 1<<20); return c }()},
		{"NUL and escapes", func() Contact { c := sparse; c[AddressStreet] = "a\x00\"\\\n"; return c }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unpackContact(packContact(&tt.c)); got != tt.c {
				t.Errorf("round trip changed the contact:\n got %q\nwant %q", got, tt.c)
			}
		})
	}
}
