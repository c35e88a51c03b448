package connector

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// unmarshalSeeds are what the state holds: Marshal's output, what
// encoding/json wrote before it (U+2028, invalid UTF-8), and arrays a
// person could have written by hand with the sqlite3 shell.
func unmarshalSeeds() [][]byte {
	var c Contact
	c[DisplayName], c[Email], c[Title] = "Zoë \"Z\" <Ångström> & Co", "zoe@example.org", "a\\b\n\t\r\x01\x1f"
	legacy, _ := json.Marshal([]string{"line\u2028sep\u2029", "bad \xff byte", "<>&", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", ""})
	empty := Contact{}
	seeds := [][]byte{c.Marshal(), empty.Marshal(), legacy,
		[]byte(` [ "a" , "b"` + strings.Repeat(`,""`, int(NumFields)-2) + " ]\n"),
		[]byte(`["\u00e9\ud83d\ude00\/\b\f"` + strings.Repeat(`,""`, int(NumFields)-1) + `]`),
		[]byte(`["a"` + strings.Repeat(`,""`, int(NumFields)-2) + `]`),
		[]byte(`["a"` + strings.Repeat(`,""`, int(NumFields)) + `]`),
		[]byte(`["a",1` + strings.Repeat(`,""`, int(NumFields)-2) + `]`),
		[]byte(`{}`), []byte(`null`), []byte(`["\x"]`), []byte(`["unterminated`),
	}
	return seeds
}

// TestUnmarshalContact: Marshal's output comes back unchanged, through the
// fast path; everything else decodes as encoding/json decodes it.
func TestUnmarshalContact(t *testing.T) {
	var c Contact
	for i := range c {
		c[i] = strings.Repeat(string(rune('a'+i)), i)
	}
	c[Title] = "quote \" backslash \\ tab \t nl \n ctl \x02 <b>&amp; é 東京 😀"
	if got, ok := unmarshalFast(c.Marshal()); !ok || got != c {
		t.Errorf("fast path: ok=%v\n got %q\nwant %q", ok, got, c)
	}
	for _, seed := range unmarshalSeeds() {
		checkUnmarshal(t, seed)
	}
}

func FuzzUnmarshalContact(f *testing.F) {
	for _, s := range unmarshalSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkUnmarshal(t, data)
		// The bytes as a contact's fields: Marshal then UnmarshalContact
		// gives them back (invalid UTF-8 aside, which JSON cannot hold).
		var c Contact
		for i, part := range bytes.SplitN(data, []byte{0xfe}, int(NumFields)) {
			c[i] = string(part)
		}
		valid := true
		for _, v := range c {
			valid = valid && utf8.ValidString(v)
		}
		if got, err := UnmarshalContact(c.Marshal()); valid && (err != nil || got != c) {
			t.Fatalf("round trip of %q: %q, %v", c, got, err)
		}
	})
}

// checkUnmarshal fails unless UnmarshalContact decodes data as
// encoding/json does, and unless the fast path, when it answers, agrees.
func checkUnmarshal(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := unmarshalJSON(data)
	got, err := UnmarshalContact(data)
	if (err != nil) != (wantErr != nil) || got != want {
		t.Fatalf("UnmarshalContact(%q) = %q, %v; encoding/json: %q, %v", data, got, err, want, wantErr)
	}
	if fast, ok := unmarshalFast(data); ok && (wantErr != nil || fast != want) {
		t.Fatalf("fast path on %q: %q; encoding/json: %q, %v", data, fast, want, wantErr)
	}
}

// BenchmarkUnmarshalContact decodes a typical stored contact (the bench's
// LDAP data): the fast path against encoding/json.
func BenchmarkUnmarshalContact(b *testing.B) {
	var c Contact
	c[DisplayName], c[FirstName], c[LastName] = "Élodie Lefèvre 0000000", "Élodie", "Lefèvre"
	c[Phone1], c[Phone1Type], c[Phone2], c[Phone2Type] = "+33100000000", "work", "+33600000000", "mobile"
	c[Email], c[Title], c[CompanyName] = "elodie.lefevre.0@supplier0.example", "Responsable achats", "Boulangerie Müller & Fils"
	c[AddressStreet], c[AddressCity], c[AddressZip] = "1 rue de l'Église", "Paris", "01000"
	data := c.Marshal()
	for _, bm := range []struct {
		name string
		fn   func([]byte) (Contact, error)
	}{{"fast", UnmarshalContact}, {"encoding-json", unmarshalJSON}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got, err := bm.fn(data); err != nil || got != c {
					b.Fatal(got, err)
				}
			}
		})
	}
}
