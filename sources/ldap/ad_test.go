package ldap

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sources/ldap/ldaptest"
	goldap "github.com/go-ldap/ldap/v3"
)

// TestActiveDirectory runs against a real Samba AD DC. Samba's ports are
// fixed, so everything AD is in this one test (never in parallel).
func TestActiveDirectory(t *testing.T) {
	ad := ldaptest.StartSambaAD(t, ldaptest.SambaOptions{})
	c, err := ad.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	add := func(dn string, attrs map[string][]string) {
		t.Helper()
		addEntries(t, c, testEntry{dn, attrs})
	}
	contact := func(cn string, more map[string][]string) map[string][]string {
		m := map[string][]string{"objectClass": {"top", "person", "organizationalPerson", "contact"}, "cn": {cn}, "displayName": {cn}}
		for k, v := range more {
			m[k] = v
		}
		return m
	}
	sup := ad.SuppliersDN
	add("CN=Ada Lovelace,"+sup, contact("Ada Lovelace", map[string][]string{
		"givenName": {"Ada"}, "sn": {"Lovelace"}, "telephoneNumber": {"+33 1 23 45 67 89"}, "mail": {"ada@supplier.example"}, "company": {"Analytical Engines"}}))
	add("CN=Élodie Crétin,"+sup, contact("Élodie Crétin", map[string][]string{"company": {"Société Générale des Pièces"}, "telephoneNumber": {"+33 4 11 22 33 44"}}))
	add("OU=Archive,"+sup, map[string][]string{"objectClass": {"top", "organizationalUnit"}, "ou": {"Archive"}})
	add("CN=Grace Hopper,OU=Archive,"+sup, contact("Grace Hopper", map[string][]string{"telephoneNumber": {"+1 212 555 0100"}}))
	add("CN=Outsider,CN=Users,"+ad.BaseDN, contact("Outsider", nil)) // outside the base

	cfg := Config{
		URL:              ad.URL,
		CAFile:           ad.PKI.CAFile,
		BindDN:           ad.AdminDN,
		BindPasswordFile: writeSecret(t, ad.AdminPassword),
		BaseDN:           sup,
		Filter:           "(objectClass=contact)",
		PageSize:         2,
	}
	src, lb := open(t, cfg)
	attrs := []string{"cn", "displayname", "givenname", "sn", "telephonenumber", "mail", "company"}

	line, err := src.Check(context.Background())
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !strings.Contains(line, "TLS verified") || !strings.Contains(line, "Active Directory") || !strings.HasSuffix(line, "key objectGUID, incremental usn") {
		t.Errorf("Check = %q", line)
	}

	res0, r0 := doPull(t, src, connector.PullRequest{Attributes: attrs})
	if !res0.Complete || res0.Cursor == nil || len(r0.records) != 3 {
		t.Fatalf("full pull: complete=%v cursor=%s records=%v", res0.Complete, res0.Cursor, r0.origins)
	}
	keyOf := map[string]string{}
	for k, dn := range r0.origins {
		keyOf[dn] = k
		if !uuidRE.MatchString(k) {
			t.Errorf("%s: key %q is not a GUID string", dn, k)
		}
		// AD finds an object by its GUID string: this proves the byte order.
		res, err := c.Search(goldap.NewSearchRequest("<GUID="+k+">", goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"cn"}, nil))
		if err != nil || len(res.Entries) != 1 || !strings.EqualFold(res.Entries[0].DN, dn) {
			t.Errorf("<GUID=%s> does not find %s: %v", k, dn, err)
		}
	}
	ada := r0.records[keyOf["CN=Ada Lovelace,"+sup]]
	if ada["telephonenumber"] != "+33 1 23 45 67 89" || ada["company"] != "Analytical Engines" {
		t.Errorf("ada = %v", ada)
	}
	if got := r0.records[keyOf["CN=Élodie Crétin,"+sup]]["company"]; got != "Société Générale des Pièces" {
		t.Errorf("accents: company = %q", got)
	}

	t.Run("wrong CA", func(t *testing.T) {
		other, err := ldaptest.NewPKI(t.TempDir(), "other")
		if err != nil {
			t.Fatal(err)
		}
		bad := cfg
		bad.CAFile = other.CAFile
		s, _ := open(t, bad)
		_, err = s.Pull(context.Background(), connector.PullRequest{}, newRecorder())
		if err == nil || !strings.Contains(err.Error(), "ldap: TLS with ldaps://127.0.0.1:636 failed") {
			t.Errorf("error = %v", err)
		}
	})

	// A night's changes: modify, rename, delete, add.
	mod := goldap.NewModifyRequest("CN=Ada Lovelace,"+sup, nil)
	mod.Replace("telephoneNumber", []string{"+33 1 00 00 00 01"})
	if err := c.Modify(mod); err != nil {
		t.Fatal(err)
	}
	if err := c.ModifyDN(goldap.NewModifyDNRequest("CN=Grace Hopper,OU=Archive,"+sup, "CN=Grace Brewster Hopper", true, sup)); err != nil {
		t.Fatal(err)
	}
	if err := c.Del(goldap.NewDelRequest("CN=Élodie Crétin,"+sup, nil)); err != nil {
		t.Fatal(err)
	}
	add("CN=Frank Nouveau,"+sup, contact("Frank Nouveau", map[string][]string{"telephoneNumber": {"+33 5 55 55 55 55"}}))

	res1, r1 := doPull(t, src, connector.PullRequest{Cursor: res0.Cursor, Attributes: attrs})
	if res1.Complete || res1.Cursor == nil {
		t.Fatalf("incremental: complete=%v cursor=%s\n%s", res1.Complete, res1.Cursor, lb)
	}
	if len(r1.records) != 3 {
		t.Errorf("incremental records = %v, want ada, grace and frank", r1.origins)
	}
	if got := r1.origins[keyOf["CN=Grace Hopper,OU=Archive,"+sup]]; !strings.EqualFold(got, "CN=Grace Brewster Hopper,"+sup) {
		t.Errorf("moved entry: key now at %q", got)
	}
	elodie := keyOf["CN=Élodie Crétin,"+sup]
	found := false
	for _, k := range r1.deletes {
		found = found || k == elodie
	}
	if !found {
		t.Errorf("deletes = %v, want Élodie's %s\n%s", r1.deletes, elodie, lb)
	}
	resFull, rFull := doPull(t, src, connector.PullRequest{Full: true, Attributes: attrs})
	want := population(nil, resFull, rFull)
	if got := population(population(nil, res0, r0), res1, r1); !reflect.DeepEqual(got, want) {
		t.Errorf("incremental population differs from a full pull:\n got %v\nwant %v", got, want)
	}

	t.Run("lean matches go-ldap", func(t *testing.T) {
		diff := "OU=Diff," + ad.BaseDN
		addEntries(t, c,
			testEntry{diff, map[string][]string{"objectClass": {"top", "organizationalUnit"}, "ou": {"Diff"}}},
			testEntry{"CN=Zoë Binary," + diff, contact("Zoë Binary", map[string][]string{"otherTelephone": {"+33 1 11 11 11 11", "+33 1 11 11 11 12"},
				"thumbnailPhoto": {"\xff\xd8\xff\xe0\x00\x10JFIF"}, "info": {"Ünïcödé ñ"}, "company": {"Société Générale"}})},
			testEntry{"CN=Plain," + diff, contact("Plain", nil)},
		)
		dcfg := cfg
		dcfg.BaseDN = diff
		dsrc, _ := open(t, dcfg)
		for _, req := range []connector.PullRequest{
			{AllAttributes: true},
			{Attributes: []string{"CN", "othertelephone", "ThumbnailPhoto", "info", "company", "objectSid"}},
		} {
			lean, ref := pullBoth(t, dsrc, req)
			checkSame(t, lean, ref, 2)
			all := strings.Join(lean, "\n")
			for _, w := range []string{`thumbnailphoto="ffd8ffe000104a464946"`, `othertelephone="+33 1 11 11 11 11"`, `info="Ünïcödé ñ"`} {
				if !strings.Contains(all, w) {
					t.Errorf("no event holds %s:\n%s", w, all)
				}
			}
		}
	})

	// A cursor from another DC (or a restored one) means a full pull.
	other := strings.Replace(string(res1.Cursor), `"server":"`, `"server":"0`, 1)
	res2, r2 := doPull(t, src, connector.PullRequest{Cursor: []byte(other), Attributes: attrs})
	if !res2.Complete || len(r2.records) != 3 {
		t.Errorf("cursor from another DC: complete=%v records=%d", res2.Complete, len(r2.records))
	}
}
