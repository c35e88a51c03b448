package webexapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sinks/webexapi/simulator"
)

func TestApplyCreatesInBatches(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n, batch  int
		wantCalls int
	}{
		{"one", 1, 100, 1},
		{"exact", 200, 100, 2},
		{"remainder", 250, 100, 3},
		{"small batches", 7, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, setup{cfg: func(c *Config) { c.BatchSize = tc.batch }})
			var plan []connector.Change
			for i := 0; i < tc.n; i++ {
				plan = append(plan, create(fmt.Sprint("k", i), person(fmt.Sprint("Supplier ", i), fmt.Sprintf("+3314000%04d", i), "")))
			}
			j := &memJournal{}
			out, err := e.apply(context.Background(), j, plan...)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.sim.Calls()["bulk"]; got != tc.wantCalls {
				t.Errorf("bulk calls = %d, want %d", got, tc.wantCalls)
			}
			if e.sim.Len() != tc.n || len(out.bound) != tc.n || len(out.failed) != 0 {
				t.Fatalf("contacts %d, bound %d, failed %v; want %d", e.sim.Len(), len(out.bound), out.failed, tc.n)
			}
			for _, c := range e.sim.Contacts() {
				key := "k" + strings.TrimPrefix(c.DisplayName, "Supplier ")
				if out.bound[key] != c.ContactID {
					t.Errorf("key %s bound to %q, simulator holds %s", key, out.bound[key], c.ContactID)
				}
			}
			open, _ := j.Open(context.Background(), "suppliers")
			for _, en := range open {
				if en.UUID == "" || en.UUID != out.bound[en.Key] {
					t.Errorf("journal entry %s has UUID %q, bound %q", en.Key, en.UUID, out.bound[en.Key])
				}
			}
		})
	}
}

func TestBulkBodyShape(t *testing.T) {
	e := newEnv(t, setup{})
	c := full()
	if _, err := e.apply(context.Background(), &memJournal{}, create("k1", c)); err != nil {
		t.Fatal(err)
	}
	reqs := e.requests("/bulk")
	if len(reqs) != 1 {
		t.Fatalf("%d bulk requests", len(reqs))
	}
	var body map[string]any
	if err := json.Unmarshal(reqs[0], &body); err != nil {
		t.Fatal(err)
	}
	if s, ok := body["schemas"].(string); !ok || s != Schema {
		t.Errorf("schemas = %#v, want the string %q", body["schemas"], Schema)
	}
	item := body["contacts"].([]any)[0].(map[string]any)
	if item["source"] != "CH" {
		t.Errorf("source = %v", item["source"])
	}
	if _, ok := item["contactId"]; ok {
		t.Error("a create carries a contactId")
	}
	phones := item["phoneNumbers"].([]any)
	if p := phones[0].(map[string]any); p["primary"] != true || p["type"] != "work" {
		t.Errorf("phone 1 = %v, want primary work", p)
	}
	if p := phones[1].(map[string]any); p["primary"] != nil {
		t.Errorf("phone 2 = %v, want not primary", p)
	}
	var addr map[string]string
	if err := json.Unmarshal([]byte(item["address"].(string)), &addr); err != nil || addr["zipCode"] != "75001" {
		t.Errorf("address = %v (%v), want a JSON-encoded string with zipCode", item["address"], err)
	}
	// What the simulator stored reads back as what was sent.
	got := e.sim.Contacts()[0]
	raw, _ := json.Marshal(got)
	var a apiContact
	_ = json.Unmarshal(raw, &a)
	if back := a.toContact(); back != c {
		t.Errorf("read back:\n%q\nwant\n%q", back, c)
	}
}

func full() connector.Contact {
	c := person("Acme Paris", "+33140000001", "paris@acme.example")
	c[connector.FirstName], c[connector.LastName] = "Jeanne", "Martin"
	c[connector.Phone2], c[connector.Phone2Type] = "+33600000001", "mobile"
	c[connector.SIPURI] = "paris@sip.acme.example"
	c[connector.Title], c[connector.CompanyName] = "Buyer", "Acme"
	c[connector.AddressStreet], c[connector.AddressCity], c[connector.AddressZip] = "1 rue de Rivoli", "Paris", "75001"
	c[connector.AddressCountry] = "FR"
	c[connector.Group1] = "7a1c3f6e-2b4d-4e8f-9a0b-1c2d3e4f5a6b"
	return c
}

func TestPerItemFailure(t *testing.T) {
	e := newEnv(t, setup{})
	e.sim.FailItem = func(c *simulator.Contact) *simulator.Failure {
		if c.DisplayName == "Bad Corp" {
			return &simulator.Failure{Status: 400, Code: "400", Message: "phone number is not valid"}
		}
		return nil
	}
	plan := []connector.Change{
		create("a", person("Good One", "+33140000001", "")),
		create("b", person("Bad Corp", "+33140000002", "")),
		create("c", person("Good Two", "+33140000003", "")),
	}
	out, err := e.apply(context.Background(), &memJournal{}, plan...)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.bound) != 2 || out.bound["b"] != "" {
		t.Errorf("bound = %v, want a and c", out.bound)
	}
	r := out.failed["b"]
	for _, want := range []string{"phone number is not valid", `"Bad Corp"`, "key b"} {
		if !strings.Contains(r, want) {
			t.Errorf("reason %q lacks %q", r, want)
		}
	}
	if e.sim.Len() != 2 {
		t.Errorf("simulator holds %d contacts", e.sim.Len())
	}
}

func TestRejectedCalls(t *testing.T) {
	badType := person("Bad Type", "+33140000002", "")
	badType[connector.Phone1Type] = "carrier-pigeon"
	for _, tc := range []struct {
		name      string
		fault     *simulator.Fault
		b         connector.Contact
		wantBound []string
		wantFail  string // in b's reason
	}{
		{"invalid phone type fails its item", nil, badType, []string{"a"}, `create "Bad Type" (key b) rejected: phoneNumbers[0].type "carrier-pigeon" is not supported (status 400`},
		{"a call refused with 400 is split", &simulator.Fault{Route: "bulk", Status: 400, Times: 1}, person("Bolt", "+33140000002", ""), []string{"a", "b"}, ""},
		{"403 fails every contact, naming it", &simulator.Fault{Route: "bulk", Status: 403, Times: 1}, person("Bolt", "+33140000002", ""), nil, `create "Bolt" (key b): HTTP 403`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, setup{})
			if tc.fault != nil {
				e.sim.Inject(*tc.fault)
			}
			out, err := e.apply(context.Background(), &memJournal{}, create("a", person("Acme", "+33140000001", "")), create("b", tc.b))
			if err != nil {
				t.Fatal(err)
			}
			if len(out.bound) != len(tc.wantBound) {
				t.Errorf("bound %v, want %v", out.bound, tc.wantBound)
			}
			if !strings.Contains(out.failed["b"], tc.wantFail) || (tc.wantFail == "") != (out.failed["b"] == "") {
				t.Errorf("reason %q, want %q", out.failed["b"], tc.wantFail)
			}
			if e.sim.Len() != len(tc.wantBound) {
				t.Errorf("simulator holds %d", e.sim.Len())
			}
		})
	}
}

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		faults    []simulator.Fault
		maxWait   time.Duration
		wantErr   string
		wantSlept time.Duration // exact when Retry-After drives the wait
		minSlept  time.Duration
	}{
		{name: "429 storm honours Retry-After", faults: []simulator.Fault{{Route: "bulk", Status: 429, RetryAfter: "7", Times: 6}}, wantSlept: 42 * time.Second},
		{name: "423 with Retry-After", faults: []simulator.Fault{{Route: "bulk", Status: 423, RetryAfter: "3", Times: 1}}, wantSlept: 3 * time.Second},
		{name: "503 then success", faults: []simulator.Fault{{Route: "bulk", Status: 503, Times: 1}}},
		{name: "search 502 backs off", faults: []simulator.Fault{{Route: "bulk", Status: 503, Times: 1}, {Route: "search", Status: 502, Times: 2}}, minSlept: time.Second},
		{name: "budget exceeded", faults: []simulator.Fault{{Route: "bulk", Status: 429, RetryAfter: "60", Times: 1000}}, maxWait: 5 * time.Minute, wantErr: "retry budget (max_wait 5m0s) is spent", wantSlept: 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, setup{cfg: func(c *Config) {
				if tc.maxWait > 0 {
					c.MaxWait = tc.maxWait
				}
			}})
			for _, f := range tc.faults {
				e.sim.Inject(f)
			}
			plan := []connector.Change{create("a", person("Acme", "+33140000001", "")), create("b", person("Bolt", "+33140000002", ""))}
			out, err := e.apply(context.Background(), &memJournal{}, plan...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), testToken) {
					t.Error("error shows the token")
				}
			} else if err != nil {
				t.Fatal(err)
			} else if len(out.bound) != 2 {
				t.Errorf("bound %v failed %v", out.bound, out.failed)
			}
			if tc.wantSlept > 0 && e.clock.Slept() != tc.wantSlept {
				t.Errorf("waited %s, want %s", e.clock.Slept(), tc.wantSlept)
			}
			if e.clock.Slept() < tc.minSlept {
				t.Errorf("waited %s, want at least %s", e.clock.Slept(), tc.minSlept)
			}
			if tc.wantErr == "" && e.sim.Len() != 2 {
				t.Errorf("simulator holds %d contacts, want 2 (no duplicate)", e.sim.Len())
			}
		})
	}
}

func TestUpdateRemovesOldValues(t *testing.T) {
	e := newEnv(t, setup{})
	old := person("Acme", "+33140000001", "old@acme.example")
	old[connector.Phone2], old[connector.Phone2Type] = "+33600000009", "mobile"
	old[connector.Title] = "Buyer"
	out, err := e.apply(context.Background(), &memJournal{}, create("a", old))
	if err != nil {
		t.Fatal(err)
	}
	uuid := out.bound["a"]
	for _, tc := range []struct {
		name string
		edit func(c *connector.Contact)
	}{
		{"phone 1 changed", func(c *connector.Contact) { c[connector.Phone1] = "+33140000002" }},
		{"phone 2 removed, email changed", func(c *connector.Contact) {
			c[connector.Phone2], c[connector.Phone2Type] = "", ""
			c[connector.Email] = "new@acme.example"
		}},
		{"title cleared, type changed", func(c *connector.Contact) {
			c[connector.Title] = ""
			c[connector.Phone1Type] = "mobile"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := old
			tc.edit(&next)
			out, err := e.apply(context.Background(), &memJournal{}, update("a", uuid, old, next))
			if err != nil || len(out.failed) > 0 {
				t.Fatalf("err %v failed %v", err, out.failed)
			}
			got, _ := e.sim.Get(uuid)
			raw, _ := json.Marshal(got)
			var a apiContact
			_ = json.Unmarshal(raw, &a)
			if back := a.toContact(); back != next {
				t.Errorf("simulator holds\n%q\nwant\n%q", back, next)
			}
			if len(got.PhoneNumbers) != len(next.Phones()) {
				t.Errorf("phones %v, want %v", got.PhoneNumbers, next.Phones())
			}
			old = next
		})
	}
}

func TestDeletes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  *simulator.Fault
		exists bool
	}{
		{"bulk delete", nil, true},
		{"already gone", nil, false},
		{"bulk refused, one by one with 404", &simulator.Fault{Route: "bulk_delete", Status: 404, Times: 1}, false},
		{"bulk refused, one by one", &simulator.Fault{Route: "bulk_delete", Status: 400, Times: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, setup{})
			c := person("Acme", "+33140000001", "")
			uuid := "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
			if tc.exists {
				uuid = e.sim.Put(simulator.Contact{DisplayName: "Acme", PhoneNumbers: []simulator.Item{{Value: "+33140000001", Type: "work"}}})
			}
			keep := e.sim.Put(simulator.Contact{DisplayName: "Hand made", PhoneNumbers: []simulator.Item{{Value: "+33140000009", Type: "work"}}})
			if tc.fault != nil {
				e.sim.Inject(*tc.fault)
			}
			out, err := e.apply(context.Background(), &memJournal{}, del("a", uuid, c))
			if err != nil || len(out.failed) > 0 {
				t.Fatalf("err %v failed %v", err, out.failed)
			}
			if _, ok := e.sim.Get(uuid); ok {
				t.Error("contact still there")
			}
			if _, ok := e.sim.Get(keep); !ok || e.sim.Len() != 1 {
				t.Error("an unrelated contact was touched")
			}
		})
	}
}

func TestExactlyOnceAfterLostAnswer(t *testing.T) {
	for _, tc := range []struct {
		name string
		// content of the second run (the source may have changed meanwhile)
		edit        func(c *connector.Contact)
		wantUpdates int
	}{
		{"same content binds without writing", nil, 0},
		{"changed content binds and updates", func(c *connector.Contact) { c[connector.Title] = "Director" }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, setup{})
			j := &memJournal{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var journaled bool
			e.sim.AfterWrite = func(r *http.Request) {
				journaled = j.has("a") && j.has("b")
				cancel() // the client goes away: the server processed the create, the answer is lost
				<-r.Context().Done()
			}
			plan := []connector.Change{create("a", person("Acme", "+33140000001", "")), create("b", person("Bolt", "+33140000002", "bolt@example.com"))}
			out, err := e.apply(ctx, j, plan...)
			if err == nil {
				t.Fatal("first run succeeded though its answer was lost")
			}
			if !journaled {
				t.Error("the creates were not in the journal when the server processed them")
			}
			if len(out.bound) != 0 || e.sim.Len() != 2 {
				t.Fatalf("bound %v, simulator holds %d", out.bound, e.sim.Len())
			}
			e.sim.AfterWrite = nil
			e.sim.ResetCalls()
			if tc.edit != nil {
				for i := range plan {
					tc.edit(&plan[i].Contact)
				}
			}
			out, err = e.apply(context.Background(), j, plan...)
			if err != nil || len(out.failed) > 0 {
				t.Fatalf("second run: err %v failed %v", err, out.failed)
			}
			if e.sim.Len() != 2 {
				t.Fatalf("simulator holds %d contacts after the rerun, want 2", e.sim.Len())
			}
			for _, c := range e.sim.Contacts() {
				key := map[string]string{"Acme": "a", "Bolt": "b"}[c.DisplayName]
				if out.bound[key] != c.ContactID {
					t.Errorf("%s bound to %q, want %s", key, out.bound[key], c.ContactID)
				}
				if tc.edit != nil && c.Title != "Director" {
					t.Errorf("%s not updated: %+v", key, c)
				}
			}
			bulkBodies := e.requests("/bulk")
			creates := 0
			for _, b := range bulkBodies[1:] { // [0] is the first run's
				creates += strings.Count(string(b), `"source"`) - strings.Count(string(b), `"contactId"`)
			}
			if creates != 0 || e.sim.Calls()["bulk"] != tc.wantUpdates {
				t.Errorf("rerun sent %d creates in %d bulk calls, want 0 creates, %d calls", creates, e.sim.Calls()["bulk"], tc.wantUpdates)
			}
			// A third run after a crash between the answer and the commit
			// binds from the journal without even searching (and resends
			// the update, as the journal holds the content first sent).
			e.sim.ResetCalls()
			out, err = e.apply(context.Background(), j, plan...)
			if err != nil || len(out.bound) != 2 || e.sim.Len() != 2 || e.sim.Calls()["search"] != 0 || e.sim.WriteCalls() != tc.wantUpdates {
				t.Errorf("third run: err %v bound %v len %d calls %v", err, out.bound, e.sim.Len(), e.sim.Calls())
			}
		})
	}
}

func TestOpenIntentThatNeverReachedTheServer(t *testing.T) {
	e := newEnv(t, setup{})
	j := &memJournal{}
	c := person("Acme", "+33140000001", "")
	// A run recorded its intent and died before sending anything.
	_ = j.Intend(context.Background(), "suppliers", []connector.JournalEntry{{RunID: 1, Key: "a", Op: connector.ActionCreate, Contact: c}})
	out, err := e.apply(context.Background(), j, create("a", c))
	if err != nil || out.bound["a"] == "" || e.sim.Len() != 1 {
		t.Fatalf("err %v bound %v len %d", err, out.bound, e.sim.Len())
	}
	if e.sim.Calls()["search"] == 0 {
		t.Error("no lookup before creating again")
	}
}

func TestAdoptionDoesNotTakeAContactTwice(t *testing.T) {
	e := newEnv(t, setup{})
	j := &memJournal{}
	c := person("Acme", "+33140000001", "")
	// Two source records with the same content, both left open by a crash;
	// only one contact exists: the other must be created, not bound to it.
	e.sim.Put(simulator.Contact{DisplayName: "Acme", PhoneNumbers: []simulator.Item{{Value: "+33140000001", Type: "WORK"}}})
	_ = j.Intend(context.Background(), "suppliers", []connector.JournalEntry{
		{RunID: 1, Key: "a", Op: connector.ActionCreate, Contact: c}, {RunID: 1, Key: "b", Op: connector.ActionCreate, Contact: c}})
	out, err := e.apply(context.Background(), j, create("a", c), create("b", c))
	if err != nil || len(out.bound) != 2 || out.bound["a"] == out.bound["b"] || e.sim.Len() != 2 {
		t.Fatalf("err %v bound %v len %d", err, out.bound, e.sim.Len())
	}
}

func TestUpdateOfAContactDeletedByHand(t *testing.T) {
	e := newEnv(t, setup{})
	old := person("Gone Corp", "+33140000001", "")
	kept := person("Kept Corp", "+33140000002", "")
	goneID := e.sim.Put(simulator.Contact{DisplayName: "Gone Corp", PhoneNumbers: []simulator.Item{{Value: "+33140000001", Type: "work"}}})
	keptID := e.sim.Put(simulator.Contact{DisplayName: "Kept Corp", PhoneNumbers: []simulator.Item{{Value: "+33140000002", Type: "work"}}})
	// The administrator deletes one contact in Control Hub.
	req, _ := http.NewRequest(http.MethodDelete, e.srv.URL+"/v1/contacts/organizations/"+testOrg+"/contacts/"+goneID, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := e.srv.Client().Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete by hand: %v %v", resp, err)
	}
	resp.Body.Close()
	newGone, newKept := old, kept
	newGone[connector.Title], newKept[connector.Title] = "CEO", "CFO"
	out, err := e.apply(context.Background(), &memJournal{},
		update("g", goneID, old, newGone), update("k", keptID, kept, newKept))
	if err != nil {
		t.Fatal(err)
	}
	r := out.failed["g"]
	for _, want := range []string{`"Gone Corp"`, "key g", goneID, "no longer exists", "not created again"} {
		if !strings.Contains(r, want) {
			t.Errorf("reason %q lacks %q", r, want)
		}
	}
	if _, bad := out.failed["k"]; bad || e.sim.Len() != 1 {
		t.Errorf("the other update failed (%v) or a contact was created (%d contacts)", out.failed, e.sim.Len())
	}
	if c, _ := e.sim.Get(keptID); c.Title != "CFO" {
		t.Errorf("kept contact title %q", c.Title)
	}
}
