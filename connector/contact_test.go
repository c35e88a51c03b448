package connector

import (
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"
)

// hashContactsTests are contacts whose digests are stored in users' state
// files: Contact.Hash must keep giving the same values.
var hashContactsTests = []struct {
	name string
	c    Contact
	want string
}{
	{"empty", Contact{}, "ef819aeefb40d87ead140f6724f94630"},
	{"typical", Contact{DisplayName: "Élodie Lefèvre 12345", FirstName: "Élodie", LastName: "Lefèvre",
		Phone1: "+33142685300", Phone1Type: "work", Phone2: "+33612345678", Phone2Type: "mobile",
		Email: "elodie.lefevre@boulangerie-muller.example", Title: "Responsable achats",
		CompanyName: "Boulangerie Müller & Fils", AddressStreet: "12 rue de l'Église", AddressCity: "Paris",
		AddressZip: "75004"}, "b0dbde0778afe3f962e884ba0ae039b4"},
	{"every field", func() (c Contact) {
		for i := range c {
			c[i] = strings.Repeat(string(rune('a'+i)), i+1)
		}
		return c
	}(), "5f1e766c2497a28ad8bed851eb5b1feb"},
	{"lengths of 9, 10, 99, 100, 999 and 1000", Contact{DisplayName: strings.Repeat("x", 9), FirstName: strings.Repeat("y", 10),
		LastName: strings.Repeat("z", 99), Title: strings.Repeat("t", 100), CompanyName: strings.Repeat("c", 999),
		AddressStreet: strings.Repeat("s", 1000)}, "f1222402017cbd5b79104916f494bef9"},
	{"longer than the stack buffer", Contact{DisplayName: strings.Repeat("é", 300), Group5: strings.Repeat("g", 70000)}, "036a2c01a8d3f8cbbc4c188aecd843cd"},
	{"separators in values", Contact{DisplayName: "3:abc", FirstName: "0:", LastName: ":"}, "f6fe3d0a779535f201b1fa24adc9b35f"},
}

// referenceHash is Contact.Hash as first written: the digest of each
// field's decimal length, ':' and bytes.
func referenceHash(c *Contact) Hash {
	var b []byte
	for _, v := range c {
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	sum := sha256.Sum256(b)
	var h Hash
	copy(h[:], sum[:16])
	return h
}

func TestContactHashStable(t *testing.T) {
	for _, tt := range hashContactsTests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.Hash()
			if got.String() != tt.want {
				t.Errorf("Hash() = %s, want %s", got, tt.want)
			}
			if ref := referenceHash(&tt.c); got != ref {
				t.Errorf("Hash() = %s, reference %s", got, ref)
			}
		})
	}
}
