package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/contactsync/contactsync/sinks/webexapi/simulator"
)

// Faults against the Webex API sink, end to end: throttling, outages,
// refused contacts, token renewal and answers lost after the API applied a
// write. The helpers are in webex_test.go.

// TestWebexThrottlingAndOutages: faults the API answers before doing
// anything are retried; Retry-After is honoured, so a Retry-After longer
// than the run's max_wait fails the run at once instead of hammering the API.
func TestWebexThrottlingAndOutages(t *testing.T) {
	tests := []struct {
		name   string
		faults []simulator.Fault
		want   int
		bulk   int    // bulk calls of the first run
		search int    // search calls of the first run
		reason string // in the failed run's reason
	}{
		{"429 storm then success", []simulator.Fault{{Route: "bulk", Status: 429, RetryAfter: "0", Times: 6}}, ExitOK, 7, 1, ""},
		{"423 then success", []simulator.Fault{{Route: "bulk", Status: 423, RetryAfter: "0", Times: 2}}, ExitOK, 3, 1, ""},
		// A 503 to a create may hide an applied create: the contacts are
		// looked up (one search per contact) before the create is sent again.
		{"503 then success", []simulator.Fault{{Route: "bulk", Status: 503, Times: 2}}, ExitOK, 3, 1 + 2*8, ""},
		{"503 on search then success", []simulator.Fault{{Route: "search", Status: 503, RetryAfter: "0", Times: 3}}, ExitOK, 1, 4, ""},
		{"Retry-After beyond max_wait", []simulator.Fault{{Route: "bulk", Status: 429, RetryAfter: "3600", Times: 1}}, ExitFailed, 1, 1, "max_wait"},
		{"503 past the recovery limit", []simulator.Fault{{Route: "bulk", Status: 503, Times: 3}}, ExitFailed, 3, 1 + 2*8, "503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWxEnv(t, simulator.Options{}, "")
			for _, f := range tt.faults {
				e.sim.Inject(f)
			}
			recs := sups(1, 2, 3, 4, 5, 6, 7, 8)
			e.drop(recs)
			code, out, errs := e.run("sync")
			if code != tt.want {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.want, out, errs)
			}
			c := e.sim.Calls()
			if c["bulk"] != tt.bulk || c["search"] != tt.search {
				t.Errorf("calls %v, want %d bulk and %d search", c, tt.bulk, tt.search)
			}
			r := e.lastRun()
			if tt.want == ExitOK {
				if r.Status != "ok" || r.Created != len(recs) {
					t.Errorf("run %s %+v", r.Status, r.Counts)
				}
				e.exactlyOnce(recs, 0)
				return
			}
			if r.Status != "failed" || !strings.Contains(r.Reason, tt.reason) || strings.Count(r.Reason, "bulk create") != 1 {
				t.Errorf("run %s %q, want failed mentioning %q, naming the call once", r.Status, r.Reason, tt.reason)
			}
			if e.sim.Len() != 0 {
				t.Errorf("a refused create left %d contacts", e.sim.Len())
			}
			// The API recovers: the next run creates each contact once.
			e.mustRun(ExitOK, "sync")
			e.exactlyOnce(recs, 0)
		})
	}
}

// TestWebexPerItemFailure: a contact the API refuses in a bulk answer is
// rejected for this run (exit 4, listed with the API's reason) and sent
// again on the next run, with no new drop.
func TestWebexPerItemFailure(t *testing.T) {
	e := newWxEnv(t, simulator.Options{}, "")
	refuse := func(name string) {
		e.setFailItem(func(c *simulator.Contact) *simulator.Failure {
			if c.DisplayName == name {
				return &simulator.Failure{Status: 400, Code: "4003", Message: "contact refused by the test"}
			}
			return nil
		})
	}
	recs := sups(1, 2, 3, 4)
	refuse("Supplier 3")
	e.drop(recs)
	out := e.mustRun(ExitRejected, "sync")
	r := e.lastRun()
	if r.Status != "ok" || r.Created != 3 || r.Rejected != 1 {
		t.Errorf("run %s %+v\n%s", r.Status, r.Counts, out)
	}
	doc := e.show(fmt.Sprint(r.ID))
	if len(doc.Rejected) != 1 || doc.Rejected[0].Key != "3" || !strings.Contains(doc.Rejected[0].Reason, "contact refused by the test") ||
		!strings.Contains(doc.Rejected[0].Reason, `"Supplier 3"`) {
		t.Errorf("show rejected %+v", doc.Rejected)
	}
	if len(e.contactsNamed("Supplier 3")) != 0 {
		t.Errorf("the refused contact exists")
	}

	refuse("")
	e.mustRun(ExitOK, "sync") // no new drop: the failed create is retried
	if r := e.lastRun(); r.Created != 1 || r.Rejected != 0 {
		t.Errorf("retry run %+v", r.Counts)
	}
	e.exactlyOnce(recs, 0)

	// The same for an update.
	recs[1].title = "Head of purchasing"
	refuse("Supplier 2")
	e.drop(recs)
	e.mustRun(ExitRejected, "sync")
	r = e.lastRun()
	if ch := e.changesByKey(r.ID)["2/update"]; ch.Held == "" || r.Updated != 0 || r.Rejected != 1 {
		t.Errorf("refused update: run %+v, change %+v", r.Counts, ch)
	}
	if c := e.one("Supplier 2"); c.Title != "Buyer" {
		t.Errorf("refused update applied: %q", c.Title)
	}
	refuse("")
	e.mustRun(ExitOK, "sync")
	if c := e.one("Supplier 2"); c.Title != "Head of purchasing" || e.lastRun().Updated != 1 {
		t.Errorf("retried update: title %q, run %+v", c.Title, e.lastRun().Counts)
	}
	e.exactlyOnce(recs, 0)
}

// TestWebexOAuthRefreshDuringRun: the integration's access token is revoked
// in the middle of a run; the sink renews it on the 401, goes on, and
// persists the newest refresh token (the simulator invalidates the old one,
// so the next run proves it was kept).
func TestWebexOAuthRefreshDuringRun(t *testing.T) {
	e := newWxEnv(t, simulator.Options{ClientID: "C0ffee", ClientSecret: "client-s3cr3t", RefreshToken: "sim-refresh-initial"},
		", batch_size: 2, concurrency: 1")
	e.writeSecret("client.secret", "client-s3cr3t")
	e.writeSecret("webex.refresh", "sim-refresh-initial")
	var once sync.Once
	e.setAfterWrite(func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/bulk") {
			once.Do(e.sim.RevokeTokens)
		}
	})
	recs := sups(1, 2, 3, 4, 5)
	e.drop(recs)
	code, out, errs := e.run("sync")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	noSecret(t, "sync", out, errs)
	if c := e.sim.Calls(); c["access_token"] != 2 || c["bulk"] != 4 {
		t.Errorf("calls %v, want 2 token refreshes and 4 bulk calls (3 batches, one refused with 401)", c)
	}
	e.exactlyOnce(recs, 0)
	p := filepath.Join(e.dir, "webex.refresh")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != e.sim.RefreshToken() {
		t.Errorf("refresh_token_file does not hold the newest refresh token")
	}
	if info, _ := os.Stat(p); info.Mode().Perm() != 0o600 {
		t.Errorf("refresh_token_file mode %v, want 0600", info.Mode().Perm())
	}

	recs[0].title = "CEO"
	e.drop(recs)
	code, out, errs = e.run("sync")
	if code != ExitOK {
		t.Fatalf("second run with the persisted refresh token: exit %d\n%s%s", code, out, errs)
	}
	noSecret(t, "sync", out, errs)
	if c := e.one("Supplier 1"); c.Title != "CEO" {
		t.Errorf("second run did not update: %q", c.Title)
	}
}

// TestWebexLostAnswer: the API applies a bulk create and its answer never
// arrives. Whether the run dies (its context is cancelled) or the
// connection drops, no contact is ever created twice.
func TestWebexLostAnswer(t *testing.T) {
	tests := []struct {
		name   string
		before []supplier // synced before the lost answer (the job has state)
		abort  bool       // drop the connection instead of ending the run
	}{
		{"run dies, first run of the job", nil, false},
		{"run dies, job with state", sups(1, 2, 3), false},
		{"connection dropped, first run", nil, true},
		{"connection dropped, job with state", sups(1, 2, 3), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWxEnv(t, simulator.Options{}, "")
			if tt.before != nil {
				e.drop(tt.before)
				e.mustRun(ExitOK, "sync")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var once sync.Once
			e.setAfterWrite(func(r *http.Request) {
				if !strings.HasSuffix(r.URL.Path, "/bulk") {
					return
				}
				lose := false
				once.Do(func() { lose = true })
				switch {
				case lose && tt.abort:
					panic(http.ErrAbortHandler) // the server closes the connection unanswered
				case lose:
					cancel()
				}
			})
			recs := append(append([]supplier(nil), tt.before...), sups(4, 5, 6, 7)...)
			e.drop(recs)
			e.sim.ResetCalls()
			code, out, errs := e.runCtx(ctx, "sync")
			if tt.abort {
				if code != ExitOK {
					t.Fatalf("exit %d, want the run to recover\n%s%s", code, out, errs)
				}
				// One bulk create, whose contacts were then found by search
				// and bound, not sent again.
				if c := e.sim.Calls(); c["bulk"] != 1 || c["search"] < 4 {
					t.Errorf("calls %v, want 1 bulk call and a search per contact", c)
				}
				e.exactlyOnce(recs, 0)
				return
			}
			if code != ExitFailed {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errs)
			}
			if r := e.lastRun(); r.Status != "failed" {
				t.Errorf("run recorded %q", r.Status)
			}
			if e.sim.Len() != len(recs) {
				t.Fatalf("the simulator holds %d contacts, want the %d created before the answer was lost", e.sim.Len(), len(recs))
			}
			e.setAfterWrite(nil)
			e.sim.ResetCalls()
			e.mustRun(ExitOK, "sync")
			e.exactlyOnce(recs, 0)
			if c := e.sim.Calls(); c["bulk"] != 0 {
				t.Errorf("the rerun sent %d bulk calls, want none (all bound)", c["bulk"])
			}
			// Every record is bound to the contact the lost call created,
			// and the journal was cleared by the commit.
			dump := e.stateDump()
			if strings.Contains(dump, "journal") {
				t.Errorf("journal left open:\n%s", dump)
			}
			for _, r := range recs {
				if c := e.one(r.name); !strings.Contains(dump, r.id+" "+c.ContactID+" bound") {
					t.Errorf("key %s not bound to %s:\n%s", r.id, c.ContactID, dump)
				}
			}
		})
	}
}

// TestWebexNightsWithLostAnswers runs several nights of growing and
// changing drops in which one bulk answer is lost each night (the run dies,
// or the connection drops), with several batches in flight at once; after
// each night every record is exactly one contact with its latest content.
func TestWebexNightsWithLostAnswers(t *testing.T) {
	e := newWxEnv(t, simulator.Options{}, ", batch_size: 3, concurrency: 4")
	e.sim.Put(handMade("Supplier 2", "01 23 45 00 02", "work", "", "")) // adopted on night 1
	for night := 1; night <= 6; night++ {
		var recs []supplier
		for i := 1; i <= 4*night; i++ {
			r := sup(i)
			r.title = fmt.Sprintf("Title %d", night)
			recs = append(recs, r)
		}
		e.drop(recs)
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		calls := 0
		e.setAfterWrite(func(r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/bulk") {
				return
			}
			mu.Lock()
			calls++
			lose := calls == 1+night%3
			mu.Unlock()
			switch {
			case lose && night%2 == 0:
				panic(http.ErrAbortHandler)
			case lose:
				cancel()
			}
		})
		code, out, errs := e.runCtx(ctx, "sync")
		cancel()
		e.setAfterWrite(nil)
		if code != ExitOK {
			if code != ExitFailed {
				t.Fatalf("night %d: exit %d\n%s%s", night, code, out, errs)
			}
			e.mustRun(ExitOK, "sync")
		}
		e.exactlyOnce(recs, 0)
		for _, r := range recs {
			if c := e.one(r.name); c.Title != r.title {
				t.Errorf("night %d: %s has title %q, want %q", night, r.name, c.Title, r.title)
			}
		}
		// The state agrees with the organization: an unchanged rerun
		// writes nothing.
		e.sim.ResetCalls()
		e.drop(recs)
		e.mustRun(ExitOK, "sync")
		if n := e.sim.WriteCalls(); n != 0 {
			t.Errorf("night %d: an unchanged rerun made %d write calls", night, n)
		}
	}
	failed := 0
	for _, r := range e.history() {
		if r.Status == "failed" {
			failed++
		}
	}
	if failed != 3 {
		t.Errorf("%d runs died, want 3 (the odd nights)", failed)
	}
}

// TestWebexFirstRunDiesAfterSomeBatches: the first run of a job dies after
// one batch of creates was answered (its UUIDs are in the journal) and while
// the next was applied unanswered. The rerun binds both as the creates they
// were: not as adopted contacts, with no warning about them, and without
// sending anything again.
func TestWebexFirstRunDiesAfterSomeBatches(t *testing.T) {
	e := newWxEnv(t, simulator.Options{}, ", batch_size: 2, concurrency: 1")
	hand := e.sim.Put(handMade("Supplier 5", "01 23 45 00 05", "work", "", "")) // a real adoption
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	calls := 0
	e.setAfterWrite(func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/bulk") {
			mu.Lock()
			calls++
			if calls == 2 {
				cancel()
			}
			mu.Unlock()
		}
	})
	recs := sups(1, 2, 3, 4, 5)
	e.drop(recs)
	if code, out, errs := e.runCtx(ctx, "sync"); code != ExitFailed {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errs)
	}
	e.setAfterWrite(nil)
	e.sim.ResetCalls()
	code, out, errs := e.run("sync", "-v")
	if code != ExitOK {
		t.Fatalf("rerun: exit %d\n%s%s", code, out, errs)
	}
	if strings.Contains(errs, "not in this run's plan") {
		t.Errorf("the rerun warns about contacts it bound:\n%s", errs)
	}
	r := e.lastRun()
	if r.Created != 4 || r.Adopted != 1 {
		t.Errorf("rerun %+v, want the 4 contacts of the dead run recorded as created, 1 adopted", r.Counts)
	}
	ch := e.changesByKey(r.ID)
	if ch["5/bind"].UUID != hand {
		t.Errorf("Supplier 5 not adopted: %+v", ch)
	}
	if c := e.sim.Calls(); c["bulk"] != 1 { // the update of the adopted contact
		t.Errorf("rerun calls %v, want one bulk call", c)
	}
	e.exactlyOnce(recs, 0)
}
