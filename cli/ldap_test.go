package cli

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/contactsync/contactsync/sources/ldap/ldaptest"
)

// ldapJobs is a configuration with two jobs over the same directory: one
// incremental, one that always pulls everything. Nightly, both must emit
// the same files.
const ldapJobs = `state: state.db
listen: ""
jobs:
%JOBS%`

const ldapJob = `  - name: %NAME%
    source:
      ldap:
        url: %URL%
        start_tls: %STARTTLS%
        ca_file: %CA%
        bind_dn: "%BINDDN%"
        bind_password_file: ldap.password
        base_dn: "%BASE%"
        filter: "%FILTER%"
        page_size: 7
        incremental: %INCR%
    mapping:
      display_name: "{{.%NAMEATTR%}}"
      phones: [{value: "{{.telephoneNumber}}", type: work}]
      phone_region: FR
      email: "{{.mail}}"
    sink:
      csv: {dir: outbox-%NAME%}
    safety: {max_delete_percent: 100}
`

type ldapTarget struct {
	url, startTLS, ca, bindDN, password, base, filter, nameAttr string
	// entry returns the DN and attributes of supplier i.
	entry  func(i int) (string, map[string][]string)
	rename func(i int) (rdn, newSuperior string)
	conn   func() (*goldap.Conn, error)
}

func ldapEnv(t *testing.T, tg ldapTarget) *env {
	t.Helper()
	e := newEnv(t, "100")
	var jobs strings.Builder
	for _, j := range []struct{ name, incr string }{{"incr", "auto"}, {"full", "off"}} {
		r := strings.NewReplacer("%NAME%", j.name, "%URL%", tg.url, "%STARTTLS%", tg.startTLS, "%CA%", tg.ca,
			"%BINDDN%", tg.bindDN, "%BASE%", tg.base, "%FILTER%", tg.filter, "%INCR%", j.incr, "%NAMEATTR%", tg.nameAttr)
		jobs.WriteString(r.Replace(ldapJob))
	}
	cfg := strings.Replace(ldapJobs, "%JOBS%", jobs.String(), 1)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "ldap.password"), []byte(tg.password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// exportFrom turns a run's import file into a Control Hub export, giving
// every contact a UUID derived from its display name, as an upload would.
func exportFrom(t *testing.T, importFile, exportFile string) {
	t.Helper()
	f, err := os.Open(importFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	for i, row := range rows {
		if i > 0 {
			row[1] = fmt.Sprintf("00000000-0000-4000-8000-%012x", crc32.ChecksumIEEE([]byte(row[0])))
		}
		_ = w.Write(append(row, "extra"))
	}
	w.Flush()
	if err := os.WriteFile(exportFile, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runFiles returns the contents of a job's files of its latest run, keyed
// by their kind (import-001, delete, rejected), run id left out.
func runFiles(t *testing.T, outbox string) map[string]string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(outbox, "*.csv"))
	sort.Strings(names)
	latest := ""
	for _, n := range names {
		run := strings.SplitN(filepath.Base(n), "-", 3)[1]
		if run > latest {
			latest = run
		}
	}
	out := map[string]string{}
	for _, n := range names {
		parts := strings.SplitN(filepath.Base(n), "-", 3)
		if parts[1] == latest {
			data, _ := os.ReadFile(n)
			out[parts[2]] = string(data)
		}
	}
	return out
}

func ldapNightly(t *testing.T, tg ldapTarget) {
	conn, err := tg.conn()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	add := func(i int) {
		t.Helper()
		dn, attrs := tg.entry(i)
		req := goldap.NewAddRequest(dn, nil)
		for k, v := range attrs {
			req.Attribute(k, v)
		}
		if err := conn.Add(req); err != nil {
			t.Fatalf("add %s: %v", dn, err)
		}
	}
	for i := 1; i <= 20; i++ {
		add(i)
	}
	e := ldapEnv(t, tg)

	// Night 1: both jobs create the 20 suppliers, in the same files.
	e.mustRun(ExitOK, "sync")
	incr, full := runFiles(t, filepath.Join(e.dir, "outbox-incr")), runFiles(t, filepath.Join(e.dir, "outbox-full"))
	if incr["import-001.csv"] == "" || incr["import-001.csv"] != full["import-001.csv"] {
		t.Fatalf("night 1 files differ:\nincr %v\nfull %v", incr, full)
	}
	// The admin uploads them and reconciles.
	for _, job := range []string{"incr", "full"} {
		ex := filepath.Join(e.dir, job+"-export.csv")
		exportFrom(t, filepath.Join(e.dir, "outbox-"+job, fmt.Sprintf("%s-run%06d-import-001.csv", job, map[string]int{"incr": 1, "full": 2}[job])), ex)
		if out := e.mustRun(ExitOK, "reconcile", "--job", job, ex); !strings.Contains(out, "bound      20") {
			t.Fatalf("reconcile %s:\n%s", job, out)
		}
	}

	// During the day: a number changes, an entry is renamed and moved, one
	// is deleted, one is added.
	dn1, _ := tg.entry(1)
	mod := goldap.NewModifyRequest(dn1, nil)
	mod.Replace("telephoneNumber", []string{"+33 5 00 00 00 01"})
	if err := conn.Modify(mod); err != nil {
		t.Fatal(err)
	}
	dn2, _ := tg.entry(2)
	rdn, sup := tg.rename(2)
	if err := conn.ModifyDN(goldap.NewModifyDNRequest(dn2, rdn, true, sup)); err != nil {
		t.Fatal(err)
	}
	dn3, _ := tg.entry(3)
	if err := conn.Del(goldap.NewDelRequest(dn3, nil)); err != nil {
		t.Fatal(err)
	}
	add(21)

	// Night 2: the incremental job reads only what changed, and emits
	// exactly what the full pull emits.
	e.mustRun(ExitOK, "sync")
	runs := e.history()
	byJob := map[string]int{}
	for _, r := range runs {
		if _, seen := byJob[r.Job]; !seen && r.Kind == "sync" {
			byJob[r.Job] = r.Counts.Source
			// The renamed and moved entry is the same contact, unchanged.
			if r.Created != 1 || r.Updated != 1 || r.Deleted != 1 {
				t.Errorf("night 2, job %s: %+v, want 1 create, 1 update, 1 delete", r.Job, r.Counts)
			}
		}
	}
	if byJob["incr"] >= byJob["full"] {
		t.Errorf("the incremental job read %d records, the full one %d: not incremental", byJob["incr"], byJob["full"])
	}
	incr, full = runFiles(t, filepath.Join(e.dir, "outbox-incr")), runFiles(t, filepath.Join(e.dir, "outbox-full"))
	if len(incr) != 2 || incr["import-001.csv"] != full["import-001.csv"] || incr["delete.csv"] != full["delete.csv"] {
		t.Errorf("night 2 files differ:\nincr %v\nfull %v", incr, full)
	}
	if !strings.Contains(incr["import-001.csv"], "+33500000001") {
		t.Errorf("the changed number is not in the import file:\n%s", incr["import-001.csv"])
	}

	// Night 3: nothing changed, nothing is emitted.
	e.mustRun(ExitOK, "sync")
	if runs := e.history(); runs[0].Created+runs[0].Updated+runs[0].Deleted+runs[1].Created+runs[1].Updated+runs[1].Deleted != 0 {
		t.Errorf("night 3 emitted changes: %+v %+v", runs[0].Counts, runs[1].Counts)
	}
}

func TestLDAPNightlyIncrementalEqualsFull(t *testing.T) {
	s := ldaptest.StartSlapd(t, ldaptest.SlapdOptions{SessionLog: 1000,
		ExtraLDIF: "dn: ou=suppliers,dc=example,dc=org\nobjectClass: organizationalUnit\nou: suppliers\n\n" +
			"dn: ou=moved,ou=suppliers,dc=example,dc=org\nobjectClass: organizationalUnit\nou: moved\n"})
	ldapNightly(t, ldapTarget{
		url: s.URL, startTLS: "true", ca: s.PKI.CAFile, bindDN: s.ReaderDN, password: s.ReaderPass,
		base: "ou=suppliers," + s.Suffix, filter: "(objectClass=inetOrgPerson)", nameAttr: "cn",
		entry: func(i int) (string, map[string][]string) {
			return fmt.Sprintf("uid=s%02d,ou=suppliers,%s", i, s.Suffix), map[string][]string{
				"objectClass": {"inetOrgPerson"}, "uid": {fmt.Sprintf("s%02d", i)}, "sn": {"Fournisseur"},
				"cn": {fmt.Sprintf("Fournisseur Éléphant %02d", i)}, "telephoneNumber": {fmt.Sprintf("01 23 45 67 %02d", i)},
				"mail": {fmt.Sprintf("s%02d@fournisseur.example", i)}}
		},
		rename: func(i int) (string, string) {
			return fmt.Sprintf("uid=s%02d-renamed", i), "ou=moved,ou=suppliers," + s.Suffix
		},
		conn: s.Conn,
	})
}

func TestActiveDirectoryNightlyIncrementalEqualsFull(t *testing.T) {
	ad := ldaptest.StartSambaAD(t, ldaptest.SambaOptions{})
	conn, err := ad.Conn()
	if err != nil {
		t.Fatal(err)
	}
	moved := "OU=Moved," + ad.SuppliersDN
	req := goldap.NewAddRequest(moved, nil)
	req.Attribute("objectClass", []string{"top", "organizationalUnit"})
	if err := conn.Add(req); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	ldapNightly(t, ldapTarget{
		url: ad.URL, startTLS: "false", ca: ad.PKI.CAFile, bindDN: ad.AdminDN, password: ad.AdminPassword,
		base: ad.SuppliersDN, filter: "(objectClass=contact)", nameAttr: "displayName",
		entry: func(i int) (string, map[string][]string) {
			cn := fmt.Sprintf("Fournisseur Éléphant %02d", i)
			return "CN=" + cn + "," + ad.SuppliersDN, map[string][]string{
				"objectClass": {"top", "person", "organizationalPerson", "contact"}, "cn": {cn}, "displayName": {cn},
				"telephoneNumber": {fmt.Sprintf("01 23 45 67 %02d", i)}, "mail": {fmt.Sprintf("s%02d@fournisseur.example", i)}}
		},
		rename: func(i int) (string, string) {
			return fmt.Sprintf("CN=Fournisseur Éléphant %02d bis", i), moved
		},
		conn: ad.Conn,
	})
}
