package connector

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// rec builds a record the way sources do: lower-case names.
func rec(kv ...string) *Record {
	r := &Record{Key: "k1", Origin: "test.csv:2"}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Names = append(r.Names, strings.ToLower(kv[i]))
		r.Values = append(r.Values, kv[i+1])
	}
	return r
}

func baseMapping() MappingConfig {
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
	}
}

func boolPtr(b bool) *bool { return &b }

// forceSlow makes every template go through text/template without changing
// its output, so that the table checks both paths give the same contacts.
func forceSlow(m *MappingConfig) {
	wrap := func(s *string) {
		if *s != "" {
			*s = "{{if true}}{{end}}" + *s
		}
	}
	for _, p := range []*string{&m.DisplayName, &m.FirstName, &m.LastName, &m.Email, &m.SIPURI, &m.Title,
		&m.CompanyName, &m.Address.Street, &m.Address.City, &m.Address.State, &m.Address.Country, &m.Address.Zip} {
		wrap(p)
	}
	m.Phones = append([]PhoneMapping(nil), m.Phones...)
	for i := range m.Phones {
		wrap(&m.Phones[i].Value)
	}
	m.GroupIDs = append([]string(nil), m.GroupIDs...)
	for i := range m.GroupIDs {
		wrap(&m.GroupIDs[i])
	}
}

func TestMappingApply(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(m *MappingConfig)
		record *Record
		want   map[Field]string // fields not listed must be empty
		reject string           // the RejectError text, when the record is rejected
		slow   bool             // the templates already take the slow path (positions in errors would shift)
	}{
		{
			name:   "attribute names match case-insensitively",
			edit:   func(m *MappingConfig) { m.DisplayName = "{{.CN}}"; m.FirstName = "{{.GIVENNAME}}" },
			record: rec("cn", "Jean Dupont", "givenname", "Jean", "sn", "Dupont", "telephonenumber", "01 23 45 67 89"),
			want:   map[Field]string{DisplayName: "Jean Dupont", FirstName: "Jean", LastName: "Dupont", Phone1: "+33123456789", Phone1Type: "work"},
		},
		{
			name: "index reads a column whose name has spaces, in any case",
			edit: func(m *MappingConfig) {
				m.DisplayName = `{{index . "Supplier Name"}}`
				m.CompanyName = `{{index . "COMPANY name"}} ({{index $ "Supplier ID"}})`
			},
			record: rec("Supplier Name", "ACME Paris", "Company Name", "ACME", "Supplier ID", "S-42", "telephonenumber", "0123456789"),
			want:   map[Field]string{DisplayName: "ACME Paris", CompanyName: "ACME (S-42)", Phone1: "+33123456789", Phone1Type: "work"},
		},
		{
			name: "missing attributes render as empty strings, never <no value>",
			edit: func(m *MappingConfig) {
				m.CompanyName = "{{.company}}"
				m.SIPURI = `{{.sip | upper}}`
				m.Address.City = `{{index . "no such"}}`
			},
			record: rec("cn", "X", "telephonenumber", "+33 1 23 45 67 89"),
			want:   map[Field]string{DisplayName: "X", Phone1: "+33123456789", Phone1Type: "work"},
		},
		{
			name:   "values and results are trimmed",
			edit:   func(m *MappingConfig) { m.DisplayName = "{{.givenName}} {{.sn}}" },
			record: rec("givenname", "  Jean ", "sn", "", "telephonenumber", " 01 23 45 67 89 ", "title", "\u00a0Buyer  "),
			want:   map[Field]string{DisplayName: "Jean", FirstName: "Jean", Title: "Buyer", Phone1: "+33123456789", Phone1Type: "work"},
		},
		{
			name:   "values missing from a short Values slice are empty",
			record: &Record{Names: []string{"cn", "telephonenumber", "mail"}, Values: []string{"X", "0123456789"}},
			want:   map[Field]string{DisplayName: "X", Phone1: "+33123456789", Phone1Type: "work"},
		},
		{
			name:   "the first of duplicate names wins",
			record: rec("cn", "first", "cn", "second", "telephonenumber", "0123456789"),
			want:   map[Field]string{DisplayName: "first", Phone1: "+33123456789", Phone1Type: "work"},
		},
		{
			name:   "phones keep their configured order",
			record: rec("cn", "X", "telephonenumber", "01 23 45 67 89", "mobile", "06 12 34 56 78"),
			want:   map[Field]string{DisplayName: "X", Phone1: "+33123456789", Phone1Type: "work", Phone2: "+33612345678", Phone2Type: "mobile"},
		},
		{
			name:   "an empty phone is skipped and the next becomes phone 1",
			record: rec("cn", "X", "telephonenumber", "  ", "mobile", "06 12 34 56 78"),
			want:   map[Field]string{DisplayName: "X", Phone1: "+33612345678", Phone1Type: "mobile"},
		},
		{
			name: "five phones, gaps closed",
			edit: func(m *MappingConfig) {
				m.Phones = []PhoneMapping{{"{{.a}}", "work"}, {"{{.b}}", "mobile"}, {"{{.c}}", "home"}, {"{{.d}}", "other"}, {"{{.e}}", "work_extension"}}
			},
			record: rec("cn", "X", "a", "0123456789", "b", "", "c", "+44 20 7946 0018", "d", "", "e", "4321"),
			want: map[Field]string{DisplayName: "X", Phone1: "+33123456789", Phone1Type: "work", Phone2: "+442079460018", Phone2Type: "home",
				Phone3: "4321", Phone3Type: "work_extension"},
		},
		{
			name: "a literal switchboard number is normalised once",
			edit: func(m *MappingConfig) {
				m.Phones = append(m.Phones, PhoneMapping{Value: " 01 23 45 67 00 ", Type: "work"})
			},
			record: rec("cn", "X"),
			want:   map[Field]string{DisplayName: "X", Phone1: "+33123456700", Phone1Type: "work"},
		},
		{
			name:   "invalid phone number is rejected with its value",
			record: rec("cn", "X", "telephonenumber", "12ab"),
			reject: `phone_1: invalid phone number "12ab" for region FR`,
		},
		{
			name:   "invalid second phone names its output slot",
			record: rec("cn", "X", "telephonenumber", "0123456789", "mobile", "06 12"),
			reject: `phone_2: invalid phone number "06 12" for region FR`,
		},
		{
			name:   "a number with an extension is rejected rather than cut",
			record: rec("cn", "X", "telephonenumber", "01 23 45 67 89 ext. 12"),
			reject: `phone_1: phone number "01 23 45 67 89 ext. 12" carries an extension, which E.164 cannot hold (map the extension to a work_extension phone)`,
		},
		{
			name:   "without phone_region a national number is kept as given",
			edit:   func(m *MappingConfig) { m.PhoneRegion = "" },
			record: rec("cn", "X", "telephonenumber", " 01 23 45 67 89 ", "mobile", "+33 6 12 34 56 78"),
			want:   map[Field]string{DisplayName: "X", Phone1: "01 23 45 67 89", Phone1Type: "work", Phone2: "+33612345678", Phone2Type: "mobile"},
		},
		{
			name:   "without phone_region a + number is still validated",
			edit:   func(m *MappingConfig) { m.PhoneRegion = "" },
			record: rec("cn", "X", "telephonenumber", "+33 12"),
			reject: `phone_1: invalid phone number "+33 12"`,
		},
		{
			name:   "phone_region is case-insensitive",
			edit:   func(m *MappingConfig) { m.PhoneRegion = "gb" },
			record: rec("cn", "X", "telephonenumber", "020 7946 0018"),
			want:   map[Field]string{DisplayName: "X", Phone1: "+442079460018", Phone1Type: "work"},
		},
		{
			name: "work_extension keeps digits and a leading sign",
			edit: func(m *MappingConfig) {
				m.Phones = []PhoneMapping{{"{{.a}}", "work_extension"}, {"{{.b}}", "work_extension"}, {"{{.c}}", "work_extension"}}
			},
			record: rec("cn", "X", "a", "12 34", "b", "#99", "c", "*8-01"),
			want: map[Field]string{DisplayName: "X", Phone1: "1234", Phone1Type: "work_extension", Phone2: "#99", Phone2Type: "work_extension",
				Phone3: "*801", Phone3Type: "work_extension"},
		},
		{
			name:   "work_extension with letters is rejected",
			edit:   func(m *MappingConfig) { m.Phones = []PhoneMapping{{"{{.a}}", "work_extension"}} },
			record: rec("cn", "X", "a", "12a"),
			reject: `phone_1: invalid extension "12a" (digits expected, with an optional leading +, # or *)`,
		},
		{
			name:   "phone 1 is mandatory by default",
			record: rec("cn", "X", "mail", "x@example.com"),
			reject: `phone_1: empty (phone number 1 and its type are mandatory)`,
		},
		{
			name:   "require_phone false: an email is enough",
			edit:   func(m *MappingConfig) { m.RequirePhone = boolPtr(false) },
			record: rec("cn", "X", "mail", "x@example.com"),
			want:   map[Field]string{DisplayName: "X", Email: "x@example.com"},
		},
		{
			name:   "require_phone false: neither phone nor email",
			edit:   func(m *MappingConfig) { m.RequirePhone = boolPtr(false) },
			record: rec("cn", "X"),
			reject: `phone_1: empty, and email empty (a contact needs a phone number or an email)`,
		},
		{
			name:   "display name is mandatory",
			record: rec("cn", "  ", "telephonenumber", "0123456789"),
			reject: `display_name: empty`,
		},
		{
			name:   "email with a display name is not a bare address",
			record: rec("cn", "X", "telephonenumber", "0123456789", "mail", "Jean <jean@example.com>"),
			reject: `email: invalid email address "Jean <jean@example.com>" (a bare address such as name@example.com is expected)`,
		},
		{
			name:   "email without a domain",
			record: rec("cn", "X", "telephonenumber", "0123456789", "mail", "jean@"),
			reject: `email: invalid email address "jean@" (a bare address such as name@example.com is expected)`,
		},
		{
			name:   "email with two at signs",
			record: rec("cn", "X", "telephonenumber", "0123456789", "mail", "a@b@example.com"),
			reject: `email: invalid email address "a@b@example.com" (a bare address such as name@example.com is expected)`,
		},
		{
			name:   "email with non-ASCII local part goes through net/mail",
			record: rec("cn", "X", "telephonenumber", "0123456789", "mail", "josé@exemple.fr"),
			want:   map[Field]string{DisplayName: "X", Phone1: "+33123456789", Phone1Type: "work", Email: "josé@exemple.fr"},
		},
		{
			name:   "tab, CR and LF collapse to one space",
			edit:   func(m *MappingConfig) { m.Address.Street = "{{.street}}" },
			record: rec("cn", "Jean\tDupont", "telephonenumber", "0123456789", "title", "Head \r\n  of\nBuying\n", "street", "1 rue X\r\nBât. B"),
			want: map[Field]string{DisplayName: "Jean Dupont", Phone1: "+33123456789", Phone1Type: "work", Title: "Head of Buying",
				AddressStreet: "1 rue X Bât. B"},
		},
		{
			name:   "other C0 control characters are rejected naming the field",
			record: rec("cn", "X", "telephonenumber", "0123456789", "title", "a\abc"),
			reject: `title: control character U+0007 in "a\abc"`,
		},
		{
			name:   "C1 control characters are rejected",
			record: rec("cn", "X\u0085Y", "telephonenumber", "0123456789"),
			reject: `display_name: control character U+0085 in "X\u0085Y"`,
		},
		{
			name:   "bidirectional overrides are rejected",
			record: rec("cn", "Acme \u202eevil", "telephonenumber", "0123456789"),
			reject: `display_name: bidirectional control character U+202E in "Acme \u202eevil"`,
		},
		{
			name:   "invalid UTF-8 is rejected",
			record: rec("cn", "X", "sn", "Dupont\xff", "telephonenumber", "0123456789"),
			reject: `last_name: invalid UTF-8 in "Dupont\xff"`,
		},
		{
			name: "group ids skip empty values",
			edit: func(m *MappingConfig) {
				m.GroupIDs = []string{"{{.g1}}", "{{.g2}}", "6f8c9b3e-0000-4000-8000-00000000000a"}
			},
			record: rec("cn", "X", "telephonenumber", "0123456789", "g2", "6f8c9b3e-0000-4000-8000-000000000001"),
			want: map[Field]string{DisplayName: "X", Phone1: "+33123456789", Phone1Type: "work",
				Group1: "6f8c9b3e-0000-4000-8000-000000000001", Group2: "6f8c9b3e-0000-4000-8000-00000000000a"},
		},
		{
			name: "helpers",
			edit: func(m *MappingConfig) {
				m.DisplayName = `{{join " " .givenName .middle (upper .sn)}}`
				m.Title = `{{.title | default "Supplier"}}`
				m.CompanyName = `{{title .company}}`
				m.Address.Country = `{{lower .c | replace "fr" "France"}}`
			},
			record: rec("givenname", "Jean", "sn", "Dupont", "telephonenumber", "0123456789", "company", "ACME SUPPLIES", "c", "FR"),
			want: map[Field]string{DisplayName: "Jean DUPONT", FirstName: "Jean", LastName: "Dupont", Phone1: "+33123456789", Phone1Type: "work",
				Title: "Supplier", CompanyName: "Acme Supplies", AddressCountry: "France"},
		},
		{
			name: "with, if and $",
			edit: func(m *MappingConfig) {
				m.SIPURI = `{{with .sip}}sip:{{.}}{{end}}`
				m.CompanyName = `{{if .company}}{{.company}}{{else}}{{$.o}}{{end}}`
				m.Title = `{{with .x}}{{.}}{{else}}{{$.Title}}{{end}}`
			},
			record: rec("cn", "X", "telephonenumber", "0123456789", "sip", "x@example.com", "o", "ACME", "title", "Buyer"),
			want: map[Field]string{DisplayName: "X", Phone1: "+33123456789", Phone1Type: "work",
				SIPURI: "sip:x@example.com", CompanyName: "ACME", Title: "Buyer"},
		},
		{
			name:   "a template execution error rejects the record",
			edit:   func(m *MappingConfig) { m.Title = `{{index .title 9}}` },
			record: rec("cn", "X", "telephonenumber", "0123456789", "title", "abc"),
			slow:   true,
			reject: `title: template: title:1:2: executing "title" at <index .title 9>: error calling index: index out of range: 9`,
		},
		{
			name: "address fields",
			edit: func(m *MappingConfig) {
				m.Address = AddressMapping{"{{.street}}", "{{.l}}", "{{.st}}", "{{.co}}", "{{.postalCode}}"}
			},
			record: rec("cn", "X", "telephonenumber", "0123456789", "street", "1 rue X", "l", "Paris", "st", "IDF", "co", "France", "postalcode", "75001"),
			want: map[Field]string{DisplayName: "X", Phone1: "+33123456789", Phone1Type: "work",
				AddressStreet: "1 rue X", AddressCity: "Paris", AddressState: "IDF", AddressCountry: "France", AddressZip: "75001"},
		},
	}
	for _, tt := range tests {
		for _, slow := range []bool{false, true} {
			if slow && tt.slow {
				continue
			}
			name := tt.name
			if slow {
				name += "/slow"
			}
			t.Run(name, func(t *testing.T) {
				cfg := baseMapping()
				if tt.edit != nil {
					tt.edit(&cfg)
				}
				if slow {
					forceSlow(&cfg)
				}
				m, err := cfg.Compile()
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				if got, want := m.PhoneRegion(), strings.ToUpper(cfg.PhoneRegion); got != want {
					t.Errorf("PhoneRegion() = %q, want %q", got, want)
				}
				c := Contact{DisplayName: "stale", Group5: "stale"}
				err = m.Apply(tt.record, &c)
				if tt.reject != "" {
					var re *RejectError
					if !errors.As(err, &re) {
						t.Fatalf("Apply = %v, want a *RejectError %q", err, tt.reject)
					}
					if err.Error() != tt.reject {
						t.Fatalf("Apply = %q\n want %q", err.Error(), tt.reject)
					}
					return
				}
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				var want Contact
				for f, v := range tt.want {
					want[f] = v
				}
				for _, f := range Diff(&want, &c) {
					t.Errorf("%s = %q, want %q", f, c[f], want[f])
				}
			})
		}
	}
}

func TestNormalizePhone(t *testing.T) {
	tests := []struct {
		value, typ, region string
		want               string // "" with err: invalid
		err                bool
	}{
		{"01 23 45 67 89", "work", "FR", "+33123456789", false},
		{"+33 1 23 45 67 89", "work", "FR", "+33123456789", false},
		{"0033123456789", "work", "FR", "+33123456789", false},
		{"01.23.45.67.89", "work", "FR", "+33123456789", false},
		{"+33 (0)1 23 45 67 89", "work", "FR", "+33123456789", false},
		{"06-12-34-56-78", "mobile", "FR", "+33612345678", false},
		{"+1 650 253 0000", "work", "FR", "+16502530000", false},
		{"(650) 253-0000", "work", "US", "+16502530000", false},
		{"650.253.0000", "work", "US", "+16502530000", false},
		{"1-650-253-0000", "work", "US", "+16502530000", false},
		{"+1 (650) 253-0000", "work", "US", "+16502530000", false},
		{"020 7946 0018", "work", "GB", "+442079460018", false},
		{"+44 20 7946 0018", "work", "GB", "+442079460018", false},
		{"+44 (0)20 7946 0018", "work", "GB", "+442079460018", false},
		{"07400 123456", "mobile", "GB", "+447400123456", false},
		{"0123456789", "work", "fr", "+33123456789", false},
		{"01 23 45 67 89", "work", "", "01 23 45 67 89", false},
		{"+33123456789", "work", "", "+33123456789", false},
		{"  ", "work", "FR", "", false},
		{"1234", "work_extension", "FR", "1234", false},
		{"+33 1", "work_extension", "FR", "+331", false},

		{"12ab", "work", "FR", "", true},
		{"abc", "work", "FR", "", true},
		{"0", "work", "FR", "", true},
		{"01 23", "work", "FR", "", true},
		{"01 23 45 67 89 01 23", "work", "FR", "", true},
		{"+33 1", "work", "FR", "", true},
		{"+999 1234567", "work", "FR", "", true},
		{"+33 1 23 45 67 89 0", "work", "FR", "", true},
		{"00 00 00 00 00", "work", "FR", "", true},
		{"555-1234", "work", "US", "", true},
		{"+1 000 000 0000", "work", "US", "", true},
		{"020 7946", "work", "GB", "", true},
		{"tel: n/a", "work", "GB", "", true},
		{"+", "work", "", "", true},
		{"+33 12", "work", "", "", true},
		{"#", "work_extension", "", "", true},
		{"12#34", "work_extension", "", "", true},
		{"x1234", "work_extension", "", "", true},
		{strings.Repeat("1", 300), "work", "FR", "", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%q", tt.region, tt.typ, tt.value), func(t *testing.T) {
			got, err := NormalizePhone(tt.value, tt.typ, tt.region)
			if tt.err {
				if !errors.Is(err, ErrInvalidPhone) {
					t.Fatalf("NormalizePhone = %q, %v; want ErrInvalidPhone", got, err)
				}
				if !strings.Contains(err.Error(), quoteValue(strings.TrimSpace(tt.value))) {
					t.Errorf("error %q does not quote the value", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizePhone = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestMappingValidate(t *testing.T) {
	cfg := MappingConfig{
		DisplayName: " ",
		FirstName:   "{{.givenName",
		Phones: []PhoneMapping{
			{Value: "{{.a}}", Type: "work"},
			{Value: "{{.b}}", Type: "fax2"},
			{Value: "{{if}}", Type: ""},
			{Value: "", Type: "home"},
			{Value: "{{.e}}", Type: "mobile"},
			{Value: "{{.f}}", Type: "other"},
		},
		PhoneRegion: "XX",
		Address:     AddressMapping{City: "{{.l | nosuchfunc}}"},
		GroupIDs:    []string{"a", "b", "c", "d", "{{end}}", "f"},
	}
	v := NewValidator("").At("jobs").Index(0).At("mapping")
	cfg.Validate(v)
	var got []string
	if ps, ok := v.Err().(Problems); ok {
		for _, p := range ps {
			got = append(got, p.String())
		}
	}
	want := []string{
		`jobs[0].mapping.display_name: must be set`,
		`jobs[0].mapping.first_name: template: first_name:1: unclosed action`,
		`jobs[0].mapping.address.city: template: address.city:1: function "nosuchfunc" not defined`,
		`jobs[0].mapping.phones: 6 phones, at most 5 (Control Hub has Phone Number 1 to 5)`,
		`jobs[0].mapping.phones[1].type: unknown phone type "fax2"`,
		`jobs[0].mapping.phones[2].value: template: phones[2].value:1: missing value for if`,
		`jobs[0].mapping.phones[2].type: must be set (one of work, work_extension, mobile, home, other)`,
		`jobs[0].mapping.phones[3].value: must be set`,
		`jobs[0].mapping.phone_region: unknown region "XX" (an ISO 3166 two-letter code such as FR)`,
		`jobs[0].mapping.group_ids: 6 group ids, at most 5 (Control Hub has Group ID 1 to 5)`,
		`jobs[0].mapping.group_ids[4]: template: group_ids[4]:1: unexpected {{end}}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	t.Run("a valid mapping has no problem", func(t *testing.T) {
		m := baseMapping()
		v := NewValidator("").At("mapping")
		m.Validate(v)
		if err := v.Err(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no phone mapped while phone 1 is mandatory", func(t *testing.T) {
		m := MappingConfig{DisplayName: "{{.cn}}", Email: "{{.mail}}"}
		v := NewValidator("")
		m.Validate(v)
		want := "phones: at least one phone is needed: phone number 1 is mandatory unless require_phone is false"
		if err := v.Err(); err == nil || err.Error() != want {
			t.Fatalf("got %v, want %s", err, want)
		}
		m.RequirePhone = boolPtr(false)
		v = NewValidator("")
		m.Validate(v)
		if err := v.Err(); err != nil {
			t.Fatalf("require_phone false with an email: %v", err)
		}
		m.Email = ""
		v = NewValidator("")
		m.Validate(v)
		if err := v.Err(); err == nil {
			t.Fatal("require_phone false with neither phone nor email: no problem")
		}
	})
	t.Run("an invalid literal phone number is a configuration problem", func(t *testing.T) {
		m := baseMapping()
		m.Phones = append(m.Phones, PhoneMapping{Value: "01 23", Type: "work"})
		v := NewValidator("").At("mapping")
		m.Validate(v)
		want := `mapping.phones[2].value: invalid phone number "01 23" for region FR`
		if err := v.Err(); err == nil || err.Error() != want {
			t.Fatalf("got %v, want %s", err, want)
		}
	})
	t.Run("Compile reports the problems", func(t *testing.T) {
		_, err := cfg.Compile()
		if err == nil || !strings.Contains(err.Error(), `phones[1].type: unknown phone type "fax2"`) {
			t.Fatalf("Compile = %v", err)
		}
	})
}

func TestMappingAttributes(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(m *MappingConfig)
		names []string
		all   bool
	}{
		{"plain fields", nil, []string{"cn", "givenname", "mail", "mobile", "sn", "telephonenumber", "title"}, false},
		{"index, $ and pipelines", func(m *MappingConfig) {
			m.CompanyName = `{{index . "Company Name" | upper}}`
			m.SIPURI = `{{with .sipAddr}}sip:{{.}}{{else}}{{$.Mail}}{{end}}`
			m.GroupIDs = []string{`{{if .isVIP}}{{index $ "VIP Group"}}{{end}}`}
		}, []string{"cn", "company name", "givenname", "isvip", "mail", "mobile", "sipaddr", "sn", "telephonenumber", "title", "vip group"}, false},
		{"range over the record", func(m *MappingConfig) { m.Title = `{{range $k, $v := .}}{{$v}}{{end}}` }, nil, true},
		{"record in a variable", func(m *MappingConfig) { m.Title = `{{$r := .}}{{$r.title}}` }, nil, true},
		{"computed index", func(m *MappingConfig) { m.Title = `{{index . .col}}` }, nil, true},
		{"define", func(m *MappingConfig) { m.Title = `{{define "t"}}{{.x}}{{end}}{{template "t" .}}` }, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseMapping()
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			m, err := cfg.Compile()
			if err != nil {
				t.Fatal(err)
			}
			names, all := m.Attributes()
			if all != tt.all {
				t.Fatalf("all = %v, want %v", all, tt.all)
			}
			if !tt.all && !reflect.DeepEqual(names, tt.names) {
				t.Errorf("names = %q, want %q", names, tt.names)
			}
		})
	}
}

// TestMappingSharedNames checks the column-position cache: records of two
// files with different column orders, interleaved, and a sub-slice of a
// header sharing its first element, each read their own columns.
func TestMappingSharedNames(t *testing.T) {
	cfg := baseMapping()
	m, err := cfg.Compile()
	if err != nil {
		t.Fatal(err)
	}
	h1 := []string{"cn", "telephonenumber", "title"}
	h2 := []string{"title", "cn", "telephonenumber", "mail"}
	short := h2[:2]
	cases := []struct {
		r         *Record
		name, tel string
	}{
		{&Record{Names: h1, Values: []string{"A", "0123456789", "t"}}, "A", "+33123456789"},
		{&Record{Names: h1, Values: []string{"B", "0123456780", "t"}}, "B", "+33123456780"},
		{&Record{Names: h2, Values: []string{"t", "C", "0612345678", ""}}, "C", "+33612345678"},
		{&Record{Names: h2, Values: []string{"t", "D", "0612345679", ""}}, "D", "+33612345679"},
		{&Record{Names: h1, Values: []string{"E", "0123456781", "t"}}, "E", "+33123456781"},
		{&Record{Names: short, Values: []string{"t", "F"}}, "F", ""},
		{&Record{Names: h2, Values: []string{"t", "G", "0612345670", ""}}, "G", "+33612345670"},
	}
	// Twice, so that every header is served once from the cache.
	for round := 0; round < 2; round++ {
		for i, tc := range cases {
			var c Contact
			err := m.Apply(tc.r, &c)
			if tc.tel == "" {
				if err == nil || !strings.HasPrefix(err.Error(), "phone_1: empty") {
					t.Fatalf("round %d record %d: Apply = %v, want phone_1 empty", round, i, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("round %d record %d: %v", round, i, err)
			}
			if c[DisplayName] != tc.name || c[Phone1] != tc.tel {
				t.Errorf("round %d record %d: got %q %q, want %q %q", round, i, c[DisplayName], c[Phone1], tc.name, tc.tel)
			}
		}
	}
}

// TestMappingReusedNamesBuffer is the LDAP source's way: one Names buffer
// refilled for every entry, with the same length but other attributes.
func TestMappingReusedNamesBuffer(t *testing.T) {
	cfg := baseMapping()
	m, err := cfg.Compile()
	if err != nil {
		t.Fatal(err)
	}
	r := &Record{}
	entries := [][]string{
		{"dn", "cn=a", "cn", "A", "telephonenumber", "0123456789"},
		{"dn", "cn=b", "cn", "B", "telephonenumber", "0123456780"},
		{"dn", "cn=c", "telephonenumber", "0612345678", "cn", "C"},
		{"dn", "cn=d", "mobile", "0612345679", "cn", "D"},
		{"dn", "cn=e", "cn", "E", "telephonenumber", "0123456781"},
	}
	want := [][2]string{{"A", "+33123456789"}, {"B", "+33123456780"}, {"C", "+33612345678"}, {"D", "+33612345679"}, {"E", "+33123456781"}}
	for round := 0; round < 20; round++ { // past the re-caching period
		for i, kv := range entries {
			r.Names, r.Values = r.Names[:0], r.Values[:0]
			for j := 0; j < len(kv); j += 2 {
				r.Names = append(r.Names, strings.Clone(kv[j]))
				r.Values = append(r.Values, kv[j+1])
			}
			var c Contact
			if err := m.Apply(r, &c); err != nil {
				t.Fatalf("round %d entry %d: %v", round, i, err)
			}
			if c[DisplayName] != want[i][0] || c[Phone1] != want[i][1] {
				t.Fatalf("round %d entry %d: got %q %q, want %q", round, i, c[DisplayName], c[Phone1], want[i])
			}
		}
	}
}

// TestMappingConcurrent runs one Mapping from several goroutines, with
// shared and per-record Names, for the race detector.
func TestMappingConcurrent(t *testing.T) {
	cfg := baseMapping()
	cfg.CompanyName = `{{.company | upper}}`
	m, err := cfg.Compile()
	if err != nil {
		t.Fatal(err)
	}
	shared := []string{"cn", "telephonenumber", "company"}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				names := shared
				if i%3 == g%3 {
					names = []string{"company", "cn", "telephonenumber"}
				}
				r := &Record{Names: names}
				for _, n := range names {
					switch n {
					case "cn":
						r.Values = append(r.Values, fmt.Sprintf("n%d-%d", g, i))
					case "telephonenumber":
						r.Values = append(r.Values, "0123456789")
					case "company":
						r.Values = append(r.Values, "acme")
					}
				}
				var c Contact
				if err := m.Apply(r, &c); err != nil {
					t.Error(err)
					return
				}
				if want := fmt.Sprintf("n%d-%d", g, i); c[DisplayName] != want || c[CompanyName] != "ACME" {
					t.Errorf("got %q %q, want %q ACME", c[DisplayName], c[CompanyName], want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestSimpleEmailAgreesWithNetMail(t *testing.T) {
	for _, s := range []string{
		"a@b", "jean.dupont@example.fr", "x+tag@sub.example.co.uk", "o'neil@example.com", "a.b.c@d-e.f",
		".a@b", "a.@b", "a..b@c", "a@b..c", "a@-b", "a@b.", "@b", "a@", "a b@c", "a@b c", "a@[1.2.3.4]", `"a b"@c`,
	} {
		if simpleEmail(s) && !validEmail(s) {
			t.Errorf("%q: simpleEmail accepts, net/mail does not", s)
		}
	}
}
