package reliability

import (
	"fmt"
	"math/rand"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contactsync/contactsync/sinks/webexapi/simulator"
)

const (
	simOrg   = "0ae87ade-6c7a-4b6f-9d49-1b0e8a8f1c2d"
	simToken = "sim-token-crash-Kq2"
)

const webexCrashConfig = `state: state.db
log: {format: json, level: info}
listen: ""
jobs:
  - name: crm
    source:
      csv: {dir: drop, key: id}
    mapping:
      display_name: "{{.name}}"
      phones: [{value: "{{.phone}}", type: work}]
      email: "{{.email}}"
      title: "{{.title}}"
    sink:
      webex: {base_url: "%s/v1", org_id: ` + simOrg + `, token_file: webex.token, requests_per_second: 10000, max_wait: 30s}
    safety: {max_deletes: 1000000, max_delete_percent: 100}
`

// simMatches checks that the simulated organization holds exactly the
// population, one contact per record, with its latest content.
func simMatches(t *testing.T, sim *simulator.Server, pop population) {
	t.Helper()
	byEmail := map[string][]simulator.Contact{}
	for _, c := range sim.Contacts() {
		if len(c.Emails) != 1 {
			t.Errorf("contact %s has emails %v", c.ContactID, c.Emails)
			continue
		}
		byEmail[c.Emails[0].Value] = append(byEmail[c.Emails[0].Value], c)
	}
	bad := 0
	for _, id := range pop.ids() {
		r := pop[id]
		cs := byEmail[r.email()]
		delete(byEmail, r.email())
		switch {
		case len(cs) == 0:
			t.Errorf("record %d is not in the organization", id)
		case len(cs) > 1:
			t.Errorf("record %d is in the organization %d times (duplicate create)", id, len(cs))
		case cs[0].DisplayName != r.name || cs[0].Title != r.title || len(cs[0].PhoneNumbers) != 1 || cs[0].PhoneNumbers[0].Value != r.phone():
			t.Errorf("record %d: organization has %q %q %v, the source %q %q %q (lost update)", id,
				cs[0].DisplayName, cs[0].Title, cs[0].PhoneNumbers, r.name, r.title, r.phone())
		default:
			continue
		}
		if bad++; bad > 10 {
			t.Fatal("too many differences")
		}
	}
	for email, cs := range byEmail {
		t.Errorf("the organization still holds %s (%d contacts) that left the source", email, len(cs))
	}
}

// TestCrashWebexSink kills `contactsync sync` at random moments while it
// calls the simulated Webex API, night after night, and checks after each
// night's completed rerun that the organization holds every record exactly
// once with its latest content. The simulator runs in the test process,
// which the kills do not touch.
func TestCrashWebexSink(t *testing.T) {
	n := iterations(t, 50)
	const size, changes = 3000, 300
	sim := simulator.New(simulator.Options{OrgID: simOrg, Token: simToken})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	cfg := fmt.Sprintf(webexCrashConfig, srv.URL)

	// The calibration run has an organization of its own.
	calSrv := httptest.NewServer(simulator.New(simulator.Options{OrgID: simOrg, Token: simToken}))
	defer calSrv.Close()
	cal := newInstall(t, fmt.Sprintf(webexCrashConfig, calSrv.URL))
	writeToken(t, cal.dir)
	first, night := calibrate(t, cal, size, changes)

	in := newInstall(t, cfg)
	writeToken(t, in.dir)
	rnd := rand.New(rand.NewSource(int64(n) + 1))
	pop := newPopulation(size)
	kills := 0
	for i := range n {
		if i > 0 {
			pop = pop.evolve(rnd, i, changes)
		}
		delay, k := in.crashNight(rnd, i, pop, first, night)
		kills += k
		simMatches(t, sim, pop)
		if t.Failed() {
			t.Fatalf("night %d (kill after %v)", i, delay)
		}
	}
	interrupted := 0
	for _, r := range in.history() {
		if r.Status == "failed" {
			interrupted++
			if !strings.Contains(r.Reason, "interrupted") {
				t.Errorf("run %d failed: %s", r.ID, r.Reason)
			}
		}
	}
	t.Logf("%d nights, %d runs killed (%d recorded as interrupted); the organization holds %d contacts; calls %v",
		n, kills, interrupted, sim.Len(), sim.Calls())
}

func writeToken(t *testing.T, dir string) {
	if err := os.WriteFile(filepath.Join(dir, "webex.token"), []byte(simToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
