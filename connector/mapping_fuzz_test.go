package connector

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzMappingApply feeds arbitrary record values through a fixed mapping
// that mixes fast-path, concatenated and text/template values. Apply must
// not panic, must reject with a *RejectError, and a contact it accepts must
// hold only clean values. Seeds: testdata/fuzz/FuzzMappingApply.
func FuzzMappingApply(f *testing.F) {
	f.Add("Jean Dupont", "Dupont", "01 23 45 67 89", "06 12 34 56 78", "jean@example.fr", "Buyer")
	f.Add("", "", "", "", "", "")
	f.Add("X\tY", "a\x00b", "12ab", "+33 1", "Jean <j@x.fr>", "\xff")
	cfg := MappingConfig{
		DisplayName: "{{.cn}}",
		LastName:    "{{.sn}} {{.cn}}",
		Phones: []PhoneMapping{
			{Value: "{{.telephoneNumber}}", Type: "work"},
			{Value: "{{.mobile | trim}}", Type: "mobile"},
			{Value: "{{.sn}}", Type: "work_extension"},
		},
		PhoneRegion:  "FR",
		Email:        "{{.mail}}",
		Title:        `{{.title | default "none" | upper}}`,
		CompanyName:  `{{join " " .cn .sn}}`,
		GroupIDs:     []string{"{{.title}}"},
		RequirePhone: boolPtr(false),
	}
	m, err := cfg.Compile()
	if err != nil {
		f.Fatal(err)
	}
	names := []string{"cn", "sn", "telephonenumber", "mobile", "mail", "title"}
	f.Fuzz(func(t *testing.T, cn, sn, tel, mobile, mail, title string) {
		r := &Record{Key: "k", Names: names, Values: []string{cn, sn, tel, mobile, mail, title}}
		var c Contact
		err := m.Apply(r, &c)
		if simpleEmail(mail) && !validEmail(mail) {
			t.Fatalf("simpleEmail accepts %q, net/mail does not", mail)
		}
		if err != nil {
			var re *RejectError
			if !errors.As(err, &re) || re.Field < 0 || re.Field >= NumFields {
				t.Fatalf("Apply error %T %v is not a RejectError of a field", err, err)
			}
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("reason is not valid UTF-8: %q", err.Error())
			}
			return
		}
		if c[DisplayName] == "" || (c[Phone1] == "" && c[Email] == "") {
			t.Fatalf("accepted contact without display name or phone/email: %q", c)
		}
		for f, v := range c {
			if !utf8.ValidString(v) || v != strings.TrimSpace(v) {
				t.Fatalf("%s = %q: invalid UTF-8 or untrimmed", Field(f), v)
			}
			for _, r := range v {
				if r < 0x20 || r >= 0x7f && r <= 0x9f {
					t.Fatalf("%s = %q holds a control character", Field(f), v)
				}
			}
		}
		for i := 0; i < MaxPhones; i++ {
			vf, tf := PhoneField(i)
			if c[vf] == "" {
				continue
			}
			if !ValidPhoneType(c[tf]) {
				t.Fatalf("%s type %q", vf, c[tf])
			}
			if again, err := NormalizePhone(c[vf], c[tf], "FR"); err != nil || again != c[vf] {
				t.Fatalf("%s = %q is not stable under normalisation: %q, %v", vf, c[vf], again, err)
			}
		}
		if c[Email] != "" && !validEmail(c[Email]) {
			t.Fatalf("accepted email %q", c[Email])
		}
		var c2 Contact
		if err := m.Apply(r, &c2); err != nil || c2 != c {
			t.Fatalf("second Apply differs: %v", err)
		}
	})
}
