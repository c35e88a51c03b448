package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sinks/webexapi/simulator"
	"github.com/contactsync/contactsync/state"
)

// These tests run the Webex API sink end to end: the CLI, the run engine,
// the SQLite state and the sink, against the in-repo simulator on loopback.

const (
	wxOrg   = "0ae87ade-6c7a-4b6f-9d49-1b0e8a8f1c2d"
	wxToken = "sim-admin-token-Zq8vN3s3cr3t"
)

const wxConfig = `state: state.db
listen: ""
jobs:
  - name: crm
    source:
      csv: {dir: drop, key: id}
    mapping:
      display_name: "{{.name}}"
      phones: [{value: "{{.phone}}", type: work}]
      phone_region: FR
      email: "{{.email}}"
      title: "{{.title}}"
    sink:
%SINK%
    safety:
      max_delete_percent: 50
`

// wxEnv is an installation whose job writes to a simulated organization.
type wxEnv struct {
	*env
	sim *simulator.Server
	srv *httptest.Server
	// sinkLine is the configuration's sink block for the simulator.
	sinkLine string

	// hooks lets a test change the simulator's behaviour between runs
	// without racing with its handlers.
	mu         sync.Mutex
	failItem   func(c *simulator.Contact) *simulator.Failure
	afterWrite func(r *http.Request)
}

// newWxEnv starts a simulator and writes a configuration whose sink is
// sink.webex pointed at it; extra is added to the sink's keys.
func newWxEnv(t *testing.T, opts simulator.Options, extra string) *wxEnv {
	t.Helper()
	opts.OrgID = wxOrg
	if opts.Token == "" && opts.ClientID == "" {
		opts.Token = wxToken
	}
	e := &wxEnv{env: newEnv(t, "10"), sim: simulator.New(opts)}
	e.sim.FailItem = func(c *simulator.Contact) *simulator.Failure {
		e.mu.Lock()
		f := e.failItem
		e.mu.Unlock()
		if f == nil {
			return nil
		}
		return f(c)
	}
	e.sim.AfterWrite = func(r *http.Request) {
		e.mu.Lock()
		f := e.afterWrite
		e.mu.Unlock()
		if f != nil {
			f(r)
		}
	}
	e.srv = httptest.NewServer(e.sim)
	t.Cleanup(e.srv.Close)
	e.writeSecret("webex.token", wxToken)
	auth := "token_file: webex.token"
	if opts.ClientID != "" {
		auth = "oauth: {client_id: " + opts.ClientID + ", client_secret_file: client.secret, refresh_token_file: webex.refresh}"
	}
	e.sinkLine = fmt.Sprintf("      webex: {base_url: %q, org_id: %s, %s, requests_per_second: 1000, max_wait: 1m%s}",
		e.srv.URL+"/v1", wxOrg, auth, extra)
	e.setSink(e.sinkLine)
	return e
}

func (e *wxEnv) setSink(sink string) {
	e.t.Helper()
	cfg := strings.Replace(wxConfig, "%SINK%", sink, 1)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *wxEnv) writeSecret(name, value string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), []byte(value+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *wxEnv) setFailItem(f func(c *simulator.Contact) *simulator.Failure) {
	e.mu.Lock()
	e.failItem = f
	e.mu.Unlock()
}

func (e *wxEnv) setAfterWrite(f func(r *http.Request)) {
	e.mu.Lock()
	e.afterWrite = f
	e.mu.Unlock()
}

// supplier is one drop record.
type supplier struct{ id, name, phone, email, title string }

func sup(i int) supplier {
	return supplier{id: fmt.Sprint(i), name: fmt.Sprintf("Supplier %d", i), phone: fmt.Sprintf("+33 1 23 45 %02d %02d", i/100, i%100),
		email: fmt.Sprintf("s%d@example.com", i), title: "Buyer"}
}

func sups(ids ...int) []supplier {
	out := make([]supplier, len(ids))
	for i, id := range ids {
		out[i] = sup(id)
	}
	return out
}

// e164 is what the mapping (phone_region FR) makes of sup(i).phone.
func e164(i int) string { return fmt.Sprintf("+3312345%02d%02d", i/100, i%100) }

func (e *wxEnv) drop(recs []supplier) {
	e.t.Helper()
	var b strings.Builder
	b.WriteString("id,name,phone,email,title\n")
	for _, r := range recs {
		fmt.Fprintf(&b, "%s,%s,%s,%s,%s\n", r.id, r.name, r.phone, r.email, r.title)
	}
	e.writeDrop(b.String())
}

// contactsNamed returns the simulator's contacts with that display name.
func (e *wxEnv) contactsNamed(name string) []simulator.Contact {
	var out []simulator.Contact
	for _, c := range e.sim.Contacts() {
		if c.DisplayName == name {
			out = append(out, c)
		}
	}
	return out
}

// one returns the only contact named name, failing when there are none or
// several (a duplicate).
func (e *wxEnv) one(name string) simulator.Contact {
	e.t.Helper()
	cs := e.contactsNamed(name)
	if len(cs) != 1 {
		e.t.Fatalf("%d contacts named %q, want exactly one: %+v", len(cs), name, cs)
	}
	return cs[0]
}

// exactlyOnce checks that each record of recs is one contact, and that the
// organization holds nothing else but the listed extra contacts.
func (e *wxEnv) exactlyOnce(recs []supplier, extra int) {
	e.t.Helper()
	for _, r := range recs {
		e.one(r.name)
	}
	if got, want := e.sim.Len(), len(recs)+extra; got != want {
		e.t.Errorf("the organization holds %d contacts, want %d", got, want)
	}
}

func phones(c simulator.Contact) []string {
	var out []string
	for _, p := range c.PhoneNumbers {
		out = append(out, p.Value)
	}
	sort.Strings(out)
	return out
}

func (e *wxEnv) lastRun() connector.Run {
	e.t.Helper()
	runs := e.history()
	if len(runs) == 0 {
		e.t.Fatal("no run recorded")
	}
	return runs[0]
}

func (e *wxEnv) changesByKey(id int64) map[string]jsonChange {
	e.t.Helper()
	out := map[string]jsonChange{}
	doc := e.show(fmt.Sprint(id))
	for _, c := range append(doc.Changes, doc.Bindings...) {
		out[c.Key+"/"+string(c.Action)] = c
	}
	return out
}

// stateDump renders every entry of the job and the open journal, to prove
// that a command left the state as it was.
func (e *wxEnv) stateDump() string {
	e.t.Helper()
	ctx := context.Background()
	db, err := state.Open(ctx, filepath.Join(e.dir, "state.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	var lines []string
	if err := db.Entries(ctx, "crm", func(en connector.Entry) error {
		lines = append(lines, fmt.Sprintf("%s %s %s %x %x", en.Key, en.UUID, en.Status, en.Hash, en.Desired))
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	open, err := db.Open(ctx, "crm")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, j := range open {
		lines = append(lines, fmt.Sprintf("journal %d %s %s %s", j.RunID, j.Key, j.Op, j.UUID))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func (e *wxEnv) runCtx(ctx context.Context, args ...string) (int, string, string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{args[0], "-c", e.config}, args[1:]...)
	code := Main(ctx, IO{Args: full, Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

func noSecret(t *testing.T, what string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		for _, secret := range []string{wxToken, "s3cr3t", "sim-access-", "sim-refresh-"} {
			if strings.Contains(s, secret) {
				t.Errorf("%s shows a secret (%q):\n%s", what, secret, s)
			}
		}
	}
}

// handMade is a contact typed into Control Hub by hand.
func handMade(name, phone, phoneType, email, title string) simulator.Contact {
	c := simulator.Contact{DisplayName: name, Title: title}
	if phone != "" {
		c.PhoneNumbers = []simulator.Item{{Value: phone, Type: phoneType, Primary: true}}
	}
	if email != "" {
		c.Emails = []simulator.Item{{Value: email, Type: "work", Primary: true}}
	}
	return c
}

// TestWebexLifecycle follows a job over several nights against an
// organization that already holds hand-made contacts: adoption, an
// unchanged night, a changed number, a removal, the deletion guard.
func TestWebexLifecycle(t *testing.T) {
	e := newWxEnv(t, simulator.Options{}, "")
	// Same content as the mapped record: bound, never written.
	same := e.sim.Put(handMade("Supplier 1", e164(1), "work", "s1@example.com", "Buyer"))
	// Same name and number, written differently, and an old title: adopted
	// and updated.
	differs := e.sim.Put(handMade("Supplier 2", "01 23 45 00 02", "WORK", "", "Old title"))
	// Same name and email, another number: adopted; the number is replaced.
	byEmail := e.sim.Put(handMade("Supplier 3", "+33 9 99 99 99 99", "mobile", "S3@example.com", "Buyer"))
	// Matches no record: same name as record 4 but neither number nor email.
	namesake := e.sim.Put(handMade("Supplier 4", "+33 6 00 00 00 04", "mobile", "other@example.com", ""))
	stranger := e.sim.Put(handMade("Someone Else", "+33 6 00 00 00 99", "mobile", "", "Partner"))
	untouched := map[string]simulator.Contact{}
	for _, id := range []string{namesake, stranger} {
		c, _ := e.sim.Get(id)
		untouched[id] = c
	}
	checkUntouched := func(t *testing.T) {
		t.Helper()
		for id, want := range untouched {
			got, ok := e.sim.Get(id)
			if !ok {
				t.Errorf("hand-made contact %s (%s) was deleted", id, want.DisplayName)
				continue
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("hand-made contact %s was modified:\n got %+v\nwant %+v", id, got, want)
			}
		}
	}

	t.Run("first run adopts matching contacts", func(t *testing.T) {
		e.drop(sups(1, 2, 3, 4, 5))
		out := e.mustRun(ExitOK, "sync")
		r := e.lastRun()
		if r.Status != "ok" || r.Adopted != 3 || r.Created != 2 || r.Updated != 2 || r.Deleted != 0 {
			t.Errorf("first run figures %+v, want adopted 3, created 2, updated 2\n%s", r.Counts, out)
		}
		if got := e.sim.Calls()["bulk"]; got != 2 {
			t.Errorf("%d bulk calls, want 2 (one create, one update)", got)
		}
		// Record 4 is created beside its namesake, not merged into it.
		if n := len(e.contactsNamed("Supplier 4")); n != 2 {
			t.Errorf("%d contacts named Supplier 4, want the namesake and the new one", n)
		}
		e.one("Supplier 5")
		if e.sim.Len() != 7 {
			t.Errorf("the organization holds %d contacts, want the 5 hand-made ones and 2 new", e.sim.Len())
		}
		if c, _ := e.sim.Get(same); c.Meta != nil && !c.Meta.LastModified.Equal(c.Meta.Created) {
			t.Errorf("an identical adopted contact was written: %+v", c.Meta)
		}
		c2, _ := e.sim.Get(differs)
		if c2.Title != "Buyer" || strings.Join(phones(c2), " ") != e164(2) {
			t.Errorf("adopted Supplier 2 not updated: title %q phones %v", c2.Title, phones(c2))
		}
		c3, _ := e.sim.Get(byEmail)
		if strings.Join(phones(c3), " ") != e164(3) {
			t.Errorf("adopted Supplier 3 phones %v, want only %s", phones(c3), e164(3))
		}
		checkUntouched(t)
		ch := e.changesByKey(r.ID)
		for key, uuid := range map[string]string{"1": same, "2": differs, "3": byEmail} {
			if ch[key+"/bind"].UUID != uuid {
				t.Errorf("show: key %s bind %+v, want UUID %s", key, ch[key+"/bind"], uuid)
			}
		}
		if _, ok := ch["1/update"]; ok {
			t.Errorf("show: the identical contact 1 was updated")
		}
		if f := ch["2/update"].Fields["title"]; f != [2]string{"Old title", "Buyer"} {
			t.Errorf("show: key 2 title change %v", f)
		}
		for _, key := range []string{"4", "5"} {
			c := ch[key+"/create"]
			if c.UUID == "" || c.UUID == namesake {
				t.Errorf("show: key %s create %+v, want a new UUID", key, c)
			}
		}
	})

	t.Run("unchanged rerun makes no write call", func(t *testing.T) {
		e.sim.ResetCalls()
		e.mustRun(ExitOK, "sync") // no new drop
		e.drop(sups(1, 2, 3, 4, 5))
		out := e.mustRun(ExitOK, "sync") // the same content again
		if n := e.sim.WriteCalls(); n != 0 {
			t.Errorf("%d write calls on unchanged runs, want 0 (%v)", n, e.sim.Calls())
		}
		if r := e.lastRun(); r.Unchanged != 5 || r.Created+r.Updated+r.Deleted != 0 {
			t.Errorf("unchanged run %+v\n%s", r.Counts, out)
		}
	})

	t.Run("changed number replaces the old one", func(t *testing.T) {
		recs := sups(1, 2, 3, 4, 5)
		recs[1].phone = "+33 4 78 42 99 99"
		e.drop(recs)
		e.mustRun(ExitOK, "sync")
		c, _ := e.sim.Get(differs)
		if got := strings.Join(phones(c), " "); got != "+33478429999" {
			t.Errorf("Supplier 2 phones %q, want only the new number", got)
		}
		r := e.lastRun()
		if f := e.changesByKey(r.ID)["2/update"].Fields["phone_1"]; f != [2]string{e164(2), "+33478429999"} {
			t.Errorf("show: phone_1 change %v", f)
		}
		checkUntouched(t)
	})

	t.Run("removed record is deleted", func(t *testing.T) {
		recs := sups(1, 2, 3, 4)
		recs[1].phone = "+33 4 78 42 99 99"
		five := e.one("Supplier 5").ContactID
		e.sim.ResetCalls()
		e.drop(recs)
		e.mustRun(ExitOK, "sync")
		if _, ok := e.sim.Get(five); ok {
			t.Errorf("Supplier 5 still exists")
		}
		if c := e.sim.Calls(); c["bulk_delete"] != 1 || c["bulk"] != 0 {
			t.Errorf("calls %v, want one bulk delete", c)
		}
		r := e.lastRun()
		if r.Deleted != 1 || e.changesByKey(r.ID)["5/delete"].UUID != five {
			t.Errorf("run %+v, changes %v", r.Counts, e.changesByKey(r.ID))
		}
		checkUntouched(t)
	})

	t.Run("deletion guard blocks a mass delete", func(t *testing.T) {
		before := e.sim.Len()
		e.sim.ResetCalls()
		e.drop(sups(1))
		e.mustRun(ExitBlocked, "sync")
		if n := e.sim.WriteCalls(); n != 0 || e.sim.Len() != before {
			t.Errorf("a blocked run made %d write calls; %d contacts, want %d", n, e.sim.Len(), before)
		}
		if r := e.lastRun(); r.Status != "blocked" {
			t.Errorf("run %+v, want blocked", r)
		}
		checkUntouched(t)
	})
}

func TestWebexCheck(t *testing.T) {
	e := newWxEnv(t, simulator.Options{}, "")
	out := e.mustRun(ExitOK, "check")
	var sinkLines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "sink") {
			sinkLines = append(sinkLines, l)
		}
	}
	if len(sinkLines) != 1 || !strings.Contains(sinkLines[0], " ok ") {
		t.Errorf("check output, want one ok sink line:\n%s", out)
	}
	noSecret(t, "check", out)

	e.writeSecret("webex.token", "wrong-token-s3cr3t")
	code, out, errs := e.run("check")
	if code != ExitFailed || !strings.Contains(out, "401") {
		t.Errorf("check with a wrong token: exit %d\n%s%s", code, out, errs)
	}
	noSecret(t, "check", out, errs)
	if strings.Contains(out+errs, "wrong-token") {
		t.Errorf("check shows the token:\n%s%s", out, errs)
	}

	// A sync with the wrong token fails, says why, and shows no token.
	e.drop(sups(1))
	code, out, errs = e.run("sync", "-v")
	if code != ExitFailed || !strings.Contains(out, "token rejected (401)") {
		t.Errorf("sync with a wrong token: exit %d\n%s%s", code, out, errs)
	}
	noSecret(t, "sync", out, errs)
	if strings.Contains(out+errs, "wrong-token") {
		t.Errorf("sync shows the token:\n%s%s", out, errs)
	}
}

// TestWebexPlanMakesOnlyReadCalls: plan searches the organization (for
// adoption) but never writes, and leaves the state as it was.
func TestWebexPlanMakesOnlyReadCalls(t *testing.T) {
	e := newWxEnv(t, simulator.Options{}, "")
	hand := e.sim.Put(handMade("Supplier 1", "01 23 45 00 01", "work", "", ""))
	e.drop(sups(1, 2, 3))
	before := e.stateDump()
	out := e.mustRun(ExitOK, "plan")
	for _, want := range []string{"would be created 2, updated 1, deleted 0; unchanged 0, rejected 0, waiting 0, adopted 1",
		`~ update  1  "Supplier 1"  ` + hand, "+ create  2", "+ create  3"} {
		if !strings.Contains(out, want) {
			t.Errorf("first plan lacks %q:\n%s", want, out)
		}
	}
	if n, c := e.sim.WriteCalls(), e.sim.Calls(); n != 0 || c["search"] == 0 {
		t.Errorf("first plan calls %v, want searches only", c)
	}
	if after := e.stateDump(); after != before {
		t.Errorf("plan changed the state:\n%s\nwas:\n%s", after, before)
	}
	e.mustRun(ExitOK, "sync")

	recs := sups(1, 2, 4)
	recs[1].phone = "+33 6 11 22 33 44"
	e.drop(recs)
	e.sim.ResetCalls()
	before = e.stateDump()
	out = e.mustRun(ExitOK, "plan")
	for _, want := range []string{"~ update  2", "- delete  3", "+ create  4"} {
		if !strings.Contains(out, want) {
			t.Errorf("second plan lacks %q:\n%s", want, out)
		}
	}
	if n := e.sim.WriteCalls(); n != 0 {
		t.Errorf("plan made %d write calls (%v)", n, e.sim.Calls())
	}
	if after := e.stateDump(); after != before {
		t.Errorf("plan changed the state:\n%s\nwas:\n%s", after, before)
	}
	if r := e.lastRun(); r.Status != "dry_run" {
		t.Errorf("plan recorded as %q", r.Status)
	}
	// The plan consumed nothing: the sync that follows does it all.
	e.mustRun(ExitOK, "sync")
	if r := e.lastRun(); r.Created != 1 || r.Updated != 1 || r.Deleted != 1 {
		t.Errorf("sync after plan %+v", r.Counts)
	}
	e.exactlyOnce(recs, 0)
}

// TestWebexSwitchFromCSVSink: a job that wrote Control Hub files, whose
// contacts were imported and reconciled, moves to the API sink: no contact
// is created again, updates and deletes go to the reconciled UUIDs.
func TestWebexSwitchFromCSVSink(t *testing.T) {
	e := newWxEnv(t, simulator.Options{}, "")
	webexSink := e.sinkLine
	e.setSink("      csv: {dir: outbox}")
	recs := sups(1, 2, 3, 4)
	e.drop(recs)
	e.mustRun(ExitOK, "sync")
	stranger := e.sim.Put(handMade("Someone Else", "+33 6 00 00 00 99", "mobile", "", "Partner"))

	// The admin imports the file into Control Hub, downloads the export
	// and reconciles it.
	files := e.outputs("000001")
	if len(files) != 1 {
		t.Fatalf("run 1 wrote %v", files)
	}
	uuids := e.importIntoSimulator(filepath.Join(e.outbox, files[0]))
	export := e.exportFromSimulator()
	e.mustRun(ExitOK, "reconcile", "--job", "crm", export)
	if n := e.sim.Len(); n != 5 {
		t.Fatalf("the organization holds %d contacts, want 5", n)
	}

	// A record created in a later file and not reconciled yet stays
	// pending: the API sink never creates it a second time.
	e.drop(sups(1, 2, 3, 4, 6))
	e.mustRun(ExitOK, "sync")

	e.setSink(webexSink)
	e.sim.ResetCalls()
	e.mustRun(ExitOK, "sync") // no new drop: nothing to do
	if n := e.sim.WriteCalls(); n != 0 {
		t.Errorf("the first API run without a new drop made %d write calls", n)
	}
	next := sups(1, 2, 4, 5, 6)
	next[1].phone = "+33 4 78 42 99 99"
	next[4].title = "Changed while pending"
	e.drop(next)
	e.mustRun(ExitOK, "sync")
	r := e.lastRun()
	if r.Created != 1 || r.Updated != 1 || r.Deleted != 1 || r.Adopted != 0 || r.Waiting != 1 {
		t.Errorf("run %+v, want 1 create, 1 update, 1 delete, 1 waiting", r.Counts)
	}
	if n := len(e.contactsNamed("Supplier 6")); n != 0 {
		t.Errorf("the pending record was created through the API")
	}
	ch := e.changesByKey(r.ID)
	if ch["2/update"].UUID != uuids["Supplier 2"] || ch["3/delete"].UUID != uuids["Supplier 3"] {
		t.Errorf("changes went to the wrong contacts: %+v", ch)
	}
	if c, ok := e.sim.Get(uuids["Supplier 2"]); !ok || strings.Join(phones(c), " ") != "+33478429999" {
		t.Errorf("Supplier 2 (%s): %+v", uuids["Supplier 2"], c)
	}
	if _, ok := e.sim.Get(uuids["Supplier 3"]); ok {
		t.Errorf("Supplier 3 not deleted")
	}
	if _, ok := e.sim.Get(stranger); !ok {
		t.Errorf("the hand-made contact was deleted")
	}
	e.exactlyOnce(next[:4], 1)
}

// importIntoSimulator does what Control Hub does with an import file: each
// row without a UUID becomes a contact. It returns the UUIDs by name.
func (e *wxEnv) importIntoSimulator(path string) map[string]string {
	e.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		e.t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	out := map[string]string{}
	for _, row := range rows[1:] {
		get := func(name string) string { return row[col[name]] }
		c := handMade(get("Display Name"), get("Phone Number 1"), get("Phone Number 1 Type"), get("Contact Email"), get("Title"))
		out[c.DisplayName] = e.sim.Put(c)
	}
	return out
}

// exportFromSimulator writes a Control Hub export of the organization.
func (e *wxEnv) exportFromSimulator() string {
	e.t.Helper()
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"Contact UUID", "Display Name", "Phone Number 1", "Phone Number 1 Type", "Contact Email", "Title", "Source"})
	for _, c := range e.sim.Contacts() {
		var phone, typ, email string
		if len(c.PhoneNumbers) > 0 {
			phone, typ = c.PhoneNumbers[0].Value, strings.ToUpper(c.PhoneNumbers[0].Type)
		}
		if len(c.Emails) > 0 {
			email = c.Emails[0].Value
		}
		_ = w.Write([]string{c.ContactID, c.DisplayName, phone, typ, email, c.Title, c.Source})
	}
	w.Flush()
	p := filepath.Join(e.dir, "export.csv")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// TestWebexContactDeletedByHand: an update to a contact an administrator
// deleted in Control Hub is rejected with a reason that says so and what to
// do; the contact is never created again behind the administrator's back.
func TestWebexContactDeletedByHand(t *testing.T) {
	e := newWxEnv(t, simulator.Options{}, "")
	recs := sups(1, 2, 3)
	e.drop(recs)
	e.mustRun(ExitOK, "sync")
	gone := e.one("Supplier 2").ContactID
	req, _ := http.NewRequest(http.MethodDelete, e.srv.URL+"/v1/contacts/organizations/"+wxOrg+"/contacts/"+gone, nil)
	req.Header.Set("Authorization", "Bearer "+wxToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete by hand: %v %v", resp, err)
	}
	resp.Body.Close()

	recs[1].title = "CEO"
	e.drop(recs)
	for run := 0; run < 2; run++ { // the second run retries, with the same answer
		out := e.mustRun(ExitRejected, "sync")
		doc := e.show(fmt.Sprint(e.lastRun().ID))
		if len(doc.Rejected) != 1 || doc.Rejected[0].Key != "2" || !strings.Contains(doc.Rejected[0].Reason, gone) ||
			!strings.Contains(doc.Rejected[0].Reason, "no longer exists") {
			t.Errorf("run %d: rejected %+v\n%s", run, doc.Rejected, out)
		}
		if n := len(e.contactsNamed("Supplier 2")); n != 0 {
			t.Fatalf("the contact deleted by hand was created again")
		}
	}
	// The way out the reason gives: remove the record for one run, add it back.
	e.drop(sups(1, 3))
	e.mustRun(ExitOK, "sync")
	e.drop(recs)
	e.mustRun(ExitOK, "sync")
	e.exactlyOnce(recs, 0)
	if c := e.one("Supplier 2"); c.Title != "CEO" || c.ContactID == gone {
		t.Errorf("re-created contact %+v", c)
	}
}
