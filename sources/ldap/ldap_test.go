package ldap

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sources/ldap/ldaptest"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // problem paths with messages, in order
	}{
		{"minimal", Config{URL: "ldaps://dc1:636", BaseDN: "ou=x,dc=y"}, nil},
		{"nothing", Config{}, []string{"src.url: must be set", "src.base_dn: must be set"}},
		{"bad scheme", Config{URL: "http://dc1", BaseDN: "dc=y"}, []string{`src.url: scheme "http" is not supported`}},
		{"dn in url", Config{URL: "ldap://dc1/dc=y", BaseDN: "dc=y"}, []string{"src.url: must not carry a DN"}},
		{"ldaps and start_tls", Config{URL: "ldaps://dc1", StartTLS: true, BaseDN: "dc=y"}, []string{"src.start_tls: cannot be used with ldaps://"}},
		{"ca and insecure", Config{URL: "ldaps://dc1", CAFile: "ca.pem", InsecureSkipVerify: true, BaseDN: "dc=y"}, []string{"src.insecure_skip_verify: ca_file is set"}},
		{"bind without password", Config{URL: "ldap://dc1", BindDN: "cn=a,dc=y", BaseDN: "dc=y"}, []string{"src.bind_password_file: must be set"}},
		{"password without bind", Config{URL: "ldap://dc1", BindPasswordFile: "pw", BaseDN: "dc=y"}, []string{"src.bind_dn: must be set"}},
		{"bad dns", Config{URL: "ldap://dc1", BindDN: "nonsense", BindPasswordFile: "pw", BaseDN: "also nonsense"}, []string{`src.bind_dn: "nonsense" is not a DN`, `src.base_dn: "also nonsense" is not a DN`}},
		{"bad filter", Config{URL: "ldap://dc1", BaseDN: "dc=y", Filter: "(&(objectClass=contact)"}, []string{"src.filter: "}},
		{"bad key", Config{URL: "ldap://dc1", BaseDN: "dc=y", Key: "object GUID"}, []string{`src.key: "object GUID" is not an attribute name`}},
		{"bad page size", Config{URL: "ldap://dc1", BaseDN: "dc=y", PageSize: -1}, []string{"src.page_size: must be between 1 and 100000"}},
		{"bad incremental", Config{URL: "ldap://dc1", BaseDN: "dc=y", Incremental: "sometimes"}, []string{`src.incremental: must be auto or off, got "sometimes"`}},
		{"bad timeout", Config{URL: "ldap://dc1", BaseDN: "dc=y", Timeout: -time.Second}, []string{"src.timeout: must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := connector.NewValidator("/etc/contactsync")
			tt.cfg.Validate(v.At("src"))
			var got []string
			if err := v.Err(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tt.want) {
				t.Fatalf("problems = %q, want %q", got, tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want prefix %q", i, got[i], tt.want[i])
				}
			}
		})
	}

	t.Run("defaults and paths", func(t *testing.T) {
		c := Config{URL: "ldaps://dc1", BaseDN: "dc=y", Filter: "objectClass=contact", CAFile: "ca.pem", BindDN: "cn=a,dc=y", BindPasswordFile: "pw"}
		c.Validate(connector.NewValidator("/etc/contactsync"))
		want := Config{URL: "ldaps://dc1", BaseDN: "dc=y", Filter: "(objectClass=contact)", CAFile: "/etc/contactsync/ca.pem",
			BindDN: "cn=a,dc=y", BindPasswordFile: "/etc/contactsync/pw", PageSize: 500, Incremental: "auto", Timeout: 30 * time.Second}
		if c != want {
			t.Errorf("got %+v\nwant %+v", c, want)
		}
	})
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestPullFull(t *testing.T) {
	s := slapd(t)
	src, _ := open(t, readerConfig(t, s, people))
	res, r := doPull(t, src, connector.PullRequest{Attributes: mapped})

	if !res.Complete || res.Cursor == nil {
		t.Errorf("Complete=%v Cursor=%q: a first pull is complete and starts a cursor", res.Complete, res.Cursor)
	}
	if want := s.URL + " base=" + people + " filter=(objectClass=inetOrgPerson)"; res.Identity != want {
		t.Errorf("Identity = %q, want %q", res.Identity, want)
	}
	byDN := map[string]map[string]string{}
	for k, rec := range r.records {
		if !uuidRE.MatchString(k) {
			t.Errorf("key %q is not an entryUUID", k)
		}
		if rec["entryuuid"] != k {
			t.Errorf("key %q differs from its entryuuid %q", k, rec["entryuuid"])
		}
		byDN[r.origins[k]] = rec
	}
	// In the base and the filter: ada, élodie and grace (in a sub-OU). Out:
	// the organizationalRole (filter) and linus (ou=staff, outside the base).
	wantDNs := []string{"uid=ada,ou=people,dc=example,dc=org", "uid=grace,ou=archive,ou=people,dc=example,dc=org", "uid=élodie,ou=people,dc=example,dc=org"}
	if got := sortedKeys(byDN); strings.Join(got, "|") != strings.Join(wantDNs, "|") {
		t.Fatalf("DNs = %q, want %q", got, wantDNs)
	}
	tests := []struct{ dn, attr, want string }{
		{wantDNs[0], "telephonenumber", "+33 1 23 45 67 89"}, // first of two values, name lower-cased
		{wantDNs[0], "givenname", "Ada"},
		{wantDNs[0], "dn", wantDNs[0]},
		{wantDNs[2], "cn", "Élodie Crétin"}, // base64 in the LDIF
		{wantDNs[2], "o", "Société Générale des Pièces"},
		{wantDNs[1], "mobile", "+1 212 555 0199"},
	}
	for _, tt := range tests {
		if got := byDN[tt.dn][tt.attr]; got != tt.want {
			t.Errorf("%s %s = %q, want %q", tt.dn, tt.attr, got, tt.want)
		}
	}
	// Only what the mapping asked for (and the key) is read.
	for _, rec := range byDN {
		for name := range rec {
			if name == "uid" || name == "objectclass" {
				t.Errorf("attribute %q was not asked for", name)
			}
		}
	}
}

func TestPullAllAttributes(t *testing.T) {
	s := slapd(t)
	src, _ := open(t, readerConfig(t, s, people))
	_, r := doPull(t, src, connector.PullRequest{AllAttributes: true})
	for k, rec := range r.records {
		if rec["uid"] == "" || rec["objectclass"] == "" || rec["entryuuid"] != k {
			t.Errorf("%s: all attributes and the key expected, got %v", r.origins[k], rec)
		}
	}
}

func TestPaging(t *testing.T) {
	s := slapd(t)
	cfg := readerConfig(t, s, bulk)
	cfg.PageSize = 100
	src, lb := open(t, cfg)
	res, r := doPull(t, src, connector.PullRequest{Attributes: []string{"cn"}})
	if len(r.records) != 1200 || len(r.order) != 1200 {
		t.Fatalf("got %d records (%d distinct), want 1200", len(r.order), len(r.records))
	}
	if !res.Complete {
		t.Error("not complete")
	}
	if !strings.Contains(lb.String(), "pages=12 ") {
		t.Errorf("want 12 pages of 100 in the log:\n%s", lb)
	}
}

func TestLimit(t *testing.T) {
	s := slapd(t)
	src, _ := open(t, readerConfig(t, s, bulk))
	res, r := doPull(t, src, connector.PullRequest{Attributes: []string{"cn"}, Limit: 7})
	if len(r.order) != 7 || res.Complete || res.Cursor != nil {
		t.Errorf("records=%d Complete=%v Cursor=%q, want 7, false, nil", len(r.order), res.Complete, res.Cursor)
	}
}

func TestMissingKey(t *testing.T) {
	s := slapd(t)
	cfg := readerConfig(t, s, people)
	cfg.Key = "mail" // grace has none
	src, _ := open(t, cfg)
	res, r := doPull(t, src, connector.PullRequest{Attributes: []string{"cn"}})
	if len(r.records) != 2 || len(r.rejects) != 1 {
		t.Fatalf("records=%v rejects=%q", sortedKeys(r.records), r.rejects)
	}
	if want := `entry "uid=grace,ou=archive,ou=people,dc=example,dc=org" has no mail attribute`; !strings.Contains(r.rejects[0], want) {
		t.Errorf("reject = %q, want it to contain %q", r.rejects[0], want)
	}
	if _, ok := r.records["ada@supplier.example"]; !ok {
		t.Errorf("keys = %v, want the mail values", sortedKeys(r.records))
	}
	if res.Cursor != nil {
		t.Error("a key other than entryUUID cannot be read incrementally, yet a cursor was returned")
	}
}

func TestConnection(t *testing.T) {
	s := slapd(t)
	other, err := ldaptest.NewPKI(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	refused := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return "ldap://" + l.Addr().String()
	}()
	tests := []struct {
		name    string
		edit    func(c *Config)
		wantErr string // "" means success
		wantLog string
	}{
		{"starttls right CA", func(c *Config) {}, "", ""},
		{"ldaps right CA", func(c *Config) { c.URL, c.StartTLS = s.LDAPSURL, false }, "", ""},
		{"plain ldap", func(c *Config) { c.StartTLS, c.CAFile = false, "" }, "", ""},
		{"ldaps wrong CA", func(c *Config) { c.URL, c.StartTLS, c.CAFile = s.LDAPSURL, false, other.CAFile },
			"ldap: TLS with " + s.LDAPSURL + " failed: the server's certificate is not signed by a trusted CA", ""},
		{"starttls wrong CA", func(c *Config) { c.CAFile = other.CAFile }, "ldap: StartTLS with " + s.URL + " failed", ""},
		{"ldaps insecure", func(c *Config) { c.URL, c.StartTLS, c.CAFile, c.InsecureSkipVerify = s.LDAPSURL, false, "", true },
			"", "insecure_skip_verify is set"},
		{"bad password", func(c *Config) { c.BindPasswordFile = writeSecret(t, "Wr0ng-S3cret-Value") },
			"ldap: bind to " + s.URL + ` as "` + s.ReaderDN + `": invalid credentials (LDAP result 49)`, ""},
		{"refused", func(c *Config) { c.URL, c.StartTLS = refused, false }, "ldap: connect to " + refused + ":", ""},
		{"no such base", func(c *Config) { c.BaseDN = "ou=nowhere,dc=example,dc=org" },
			`ldap: search on ` + s.URL + `: no such base DN "ou=nowhere,dc=example,dc=org" (LDAP result 32)`, ""},
		{"size limit", func(c *Config) { c.BaseDN, c.BindDN, c.BindPasswordFile = bulk, "", "" }, // anonymous: slapd's default limit of 500
			"ldap: search on " + s.URL + ": size limit exceeded (LDAP result 4)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := readerConfig(t, s, people)
			tt.edit(&cfg)
			src, lb := open(t, cfg)
			r := newRecorder()
			_, err := src.Pull(context.Background(), connector.PullRequest{Attributes: mapped}, r)
			if err != nil {
				t.Logf("error: %v", err)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("pull: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("pull succeeded, want %q", tt.wantErr)
			case err != nil && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error = %q\nwant it to contain %q", err, tt.wantErr)
			case err == nil && len(r.records) != 3:
				t.Errorf("%d records, want 3", len(r.records))
			}
			if tt.wantLog != "" && !strings.Contains(lb.String(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, lb)
			}
			for _, secret := range []string{s.ReaderPass, "Wr0ng-S3cret-Value"} {
				if err != nil && strings.Contains(err.Error(), secret) || strings.Contains(lb.String(), secret) {
					t.Errorf("the password appears in the error or the log")
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	s := slapd(t)
	src, _ := open(t, readerConfig(t, s, people))
	line, err := src.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := s.URL + ": TLS verified, bound as " + s.ReaderDN + ", OpenLDAP (syncprov), base " + people + " readable, key entryUUID, incremental syncrepl"
	if line != want {
		t.Errorf("Check = %q\nwant    %q", line, want)
	}
	cfg := readerConfig(t, s, "ou=nowhere,dc=example,dc=org")
	src, _ = open(t, cfg)
	if _, err := src.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "LDAP result 32") {
		t.Errorf("Check of a missing base: %v", err)
	}
}

func TestFormatGUID(t *testing.T) {
	// The example from Microsoft's documentation of objectGUID's layout.
	b := []byte{0x4f, 0x6b, 0x20, 0x6a, 0xc3, 0x3c, 0x7a, 0x4f, 0x9b, 0x8d, 0x5e, 0x26, 0xd4, 0x2b, 0x38, 0x1f}
	if got, want := FormatGUID(b), "6a206b4f-3cc3-4f7a-9b8d-5e26d42b381f"; got != want {
		t.Errorf("FormatGUID = %q, want %q", got, want)
	}
}
