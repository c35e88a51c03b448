package reliability

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const csvCrashConfig = `state: state.db
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
      csv: {dir: outbox, max_rows: 5000}
    safety: {max_deletes: 1000000, max_delete_percent: 100}
`

// controlHub models what an administrator's organization holds after
// uploading every import file and deleting every contact of the delete
// reports by hand. It fails the test on a duplicate create (two contacts
// with one source key), an update or delete of a contact it does not hold,
// and a delete of a contact whose record is still in the source.
type controlHub struct {
	t        *testing.T
	header   []string
	contacts map[string][]string // by UUID
	byEmail  map[string]string   // email (the source key) -> UUID
	next     int
	creates  int
	updates  int
	deletes  int
}

func newControlHub(t *testing.T) *controlHub {
	return &controlHub{t: t, contacts: map[string][]string{}, byEmail: map[string]string{}}
}

func col(header []string, name string) int {
	for i, h := range header {
		if h == name {
			return i
		}
	}
	return -1
}

func (ch *controlHub) importFile(path string) {
	rows := readCSVFile(ch.t, path)
	if ch.header == nil {
		ch.header = rows[0]
	}
	ui, ei := col(rows[0], "Contact UUID"), col(rows[0], "Contact Email")
	for _, row := range rows[1:] {
		uuid, email := row[ui], row[ei]
		if uuid == "" {
			if prev, dup := ch.byEmail[email]; dup {
				ch.t.Errorf("%s: duplicate create of %s (already %s)", filepath.Base(path), email, prev)
				continue
			}
			ch.next++
			uuid = fmt.Sprintf("00000000-0000-4000-8000-%012d", ch.next)
			row[ui] = uuid
			ch.byEmail[email] = uuid
			ch.contacts[uuid] = row
			ch.creates++
			continue
		}
		old, ok := ch.contacts[uuid]
		if !ok {
			ch.t.Errorf("%s: update of unknown contact %s", filepath.Base(path), uuid)
			continue
		}
		if old[ei] != email {
			ch.t.Errorf("%s: update of %s carries %s, the contact is %s", filepath.Base(path), uuid, email, old[ei])
		}
		ch.contacts[uuid] = row
		ch.updates++
	}
}

func (ch *controlHub) deleteFile(path string, pop population) {
	rows := readCSVFile(ch.t, path)
	ui := col(rows[0], "Contact UUID")
	for _, row := range rows[1:] {
		uuid := row[ui]
		c, ok := ch.contacts[uuid]
		if !ok {
			ch.t.Errorf("%s: delete of unknown contact %q", filepath.Base(path), uuid)
			continue
		}
		email := c[col(ch.header, "Contact Email")]
		id, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(email, "k"), "@example.com"))
		if _, alive := pop[id]; alive {
			ch.t.Errorf("%s: spurious delete of %s, still in the source", filepath.Base(path), email)
		}
		delete(ch.contacts, uuid)
		delete(ch.byEmail, email)
		ch.deletes++
	}
}

func (ch *controlHub) export(path string) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(ch.header)
	uuids := make([]string, 0, len(ch.contacts))
	for u := range ch.contacts {
		uuids = append(uuids, u)
	}
	sort.Strings(uuids)
	for _, u := range uuids {
		_ = w.Write(ch.contacts[u])
	}
	w.Flush()
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		ch.t.Fatal(err)
	}
}

// matches checks that the organization holds exactly the population.
func (ch *controlHub) matches(pop population) {
	t := ch.t
	h := ch.header
	if len(ch.contacts) != len(pop) {
		t.Errorf("Control Hub holds %d contacts, the source %d", len(ch.contacts), len(pop))
	}
	bad := 0
	for _, id := range pop.ids() {
		r := pop[id]
		uuid, ok := ch.byEmail[r.email()]
		if !ok {
			t.Errorf("record %d never reached Control Hub", id)
			bad++
		} else if c := ch.contacts[uuid]; c[col(h, "Display Name")] != r.name || c[col(h, "Title")] != r.title || c[col(h, "Phone Number 1")] != r.phone() {
			t.Errorf("record %d: Control Hub has %q %q %q, the source %q %q %q (lost update)", id,
				c[col(h, "Display Name")], c[col(h, "Title")], c[col(h, "Phone Number 1")], r.name, r.title, r.phone())
			bad++
		}
		if bad > 10 {
			t.Fatal("too many differences")
		}
	}
}

// upload applies the files of committed runs to Control Hub, checks that
// the outbox holds nothing else (no file of an interrupted run, no
// temporary file), and moves them away as an administrator would.
func (in *install) upload(ch *controlHub, pop population, seen map[string]bool) {
	in.t.Helper()
	ok := map[string]bool{}
	for _, r := range in.history() {
		for _, f := range r.Files {
			if r.Status == "ok" {
				ok[filepath.Base(f)] = true
			}
		}
	}
	ents, err := os.ReadDir(in.outbox)
	if err != nil && !os.IsNotExist(err) {
		in.t.Fatal(err)
	}
	var names []string
	for _, d := range ents {
		if !ok[d.Name()] {
			in.t.Errorf("outbox holds %s, a file of no committed run", d.Name())
			continue
		}
		if seen[d.Name()] {
			in.t.Errorf("%s appeared twice", d.Name())
		}
		seen[d.Name()] = true
		names = append(names, d.Name())
	}
	sort.Strings(names) // run ids are zero-padded: run order, imports before the delete report
	up := filepath.Join(in.dir, "uploaded")
	_ = os.MkdirAll(up, 0o755)
	for _, n := range names {
		p := filepath.Join(in.outbox, n)
		switch {
		case strings.Contains(n, "-import-"):
			ch.importFile(p)
		case strings.HasSuffix(n, "-delete.csv"):
			ch.deleteFile(p, pop)
		}
		if err := os.Rename(p, filepath.Join(up, n)); err != nil {
			in.t.Fatal(err)
		}
	}
}

func (in *install) reconcile(ch *controlHub) {
	in.t.Helper()
	if ch.header == nil {
		return
	}
	p := filepath.Join(in.dir, "export.csv")
	ch.export(p)
	in.mustRun(0, "reconcile", "--job", "crm", p)
}

// TestCrashCSVSink kills `contactsync sync` at random moments of runs of
// 20,000 records against the CSV sink, night after night of changes, and
// checks after each night that Control Hub (modelled from the files) holds
// every record exactly once with its latest content.
func TestCrashCSVSink(t *testing.T) {
	n := iterations(t, 50)
	const size, changes = 20000, 600
	// How long an uninterrupted first run takes, to spread the kills over
	// a whole run.
	first, night := calibrate(t, newInstall(t, csvCrashConfig), size, changes)

	in := newInstall(t, csvCrashConfig)
	rnd := rand.New(rand.NewSource(int64(n)))
	pop := newPopulation(size)
	ch := newControlHub(t)
	seen := map[string]bool{}
	kills := 0
	for i := range n {
		if i > 0 {
			pop = pop.evolve(rnd, i, changes)
		}
		delay, k := in.crashNight(rnd, i, pop, first, night)
		kills += k
		in.upload(ch, pop, seen)
		in.reconcile(ch)
		if t.Failed() {
			t.Fatalf("night %d (kill after %v)", i, delay)
		}
	}
	// Changes that waited for a UUID go out on the next run.
	for range 3 {
		in.mustRun(0, "sync")
		in.upload(ch, pop, seen)
		in.reconcile(ch)
	}
	ch.matches(pop)
	var failed int
	for _, r := range in.history() {
		if r.Status == "failed" {
			failed++
			if !strings.Contains(r.Reason, "interrupted") {
				t.Errorf("run %d failed: %s", r.ID, r.Reason)
			}
		}
	}
	t.Logf("%d nights, %d runs killed (%d recorded as interrupted), Control Hub saw %d creates, %d updates, %d deletes; holds %d contacts",
		n, kills, failed, ch.creates, ch.updates, ch.deletes, len(ch.contacts))
}
