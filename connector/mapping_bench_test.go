package connector

import (
	"fmt"
	"testing"
)

// benchNames is a typical 11-attribute supplier record, shared between
// records as a CSV header is.
var benchNames = []string{"cn", "givenname", "sn", "telephonenumber", "mobile", "mail", "title", "company", "street", "l", "postalcode"}

func benchRecords(n int, ownNames bool) []*Record {
	rs := make([]*Record, n)
	for i := range rs {
		names := benchNames
		if ownNames {
			names = append([]string(nil), benchNames...)
		}
		rs[i] = &Record{
			Key:   fmt.Sprintf("S-%d", i),
			Names: names,
			Values: []string{
				fmt.Sprintf("Jean Dupont %d", i), "Jean", "Dupont", "01 23 45 67 89", "06 12 34 56 78",
				fmt.Sprintf("jean.dupont%d@example.fr", i), "Acheteur", "ACME", "1 rue de la Paix", "Paris", "75002",
			},
		}
	}
	return rs
}

func benchMapping() MappingConfig {
	return MappingConfig{
		DisplayName: "{{.cn}}",
		FirstName:   "{{.givenName}}",
		LastName:    "{{.sn}}",
		Phones: []PhoneMapping{
			{Value: "{{.telephoneNumber}}", Type: "work"},
			{Value: "{{.mobile}}", Type: "mobile"},
		},
		PhoneRegion: "FR",
		Email:       "{{.mail}}",
		Title:       "{{.title}}",
		CompanyName: "{{.company}}",
		Address:     AddressMapping{Street: "{{.street}}", City: "{{.l}}", Zip: "{{.postalCode}}"},
	}
}

// BenchmarkApply maps one record per iteration. fast: direct lookups with
// E.164 normalisation; fast_no_region: the same without phone_region, where
// no phone is parsed; fast_own_names: every record has its own Names slice
// (LDAP); concat: a "{{.givenName}} {{.sn}}" display name; slow: every
// template through text/template.
func BenchmarkApply(b *testing.B) {
	variants := []struct {
		name     string
		edit     func(*MappingConfig)
		ownNames bool
	}{
		{"fast", nil, false},
		{"fast_no_region", func(m *MappingConfig) { m.PhoneRegion = "" }, false},
		{"fast_own_names", func(m *MappingConfig) { m.PhoneRegion = "" }, true},
		{"concat", func(m *MappingConfig) { m.PhoneRegion = ""; m.DisplayName = "{{.givenName}} {{.sn}}" }, false},
		{"slow", func(m *MappingConfig) { m.PhoneRegion = ""; forceSlow(m) }, false},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			cfg := benchMapping()
			if v.edit != nil {
				v.edit(&cfg)
			}
			m, err := cfg.Compile()
			if err != nil {
				b.Fatal(err)
			}
			rs := benchRecords(64, v.ownNames)
			var c Contact
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := m.Apply(rs[i%len(rs)], &c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNormalizePhone(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := NormalizePhone("01 23 45 67 89", "work", "FR"); err != nil {
			b.Fatal(err)
		}
	}
}
