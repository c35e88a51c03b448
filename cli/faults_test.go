package cli

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/contactsync/contactsync/sinks/webexapi/simulator"
	"github.com/contactsync/contactsync/sources/ldap/ldaptest"
)

// Each fault below must end in a recorded failed run with a clear error,
// no output file of that run, a state as it was, and a clean next run.

// failedRun checks the last run: failed, with a reason that mentions
// every want, and no output file (nor a temporary one) left.
func (e *env) failedRun(code int, out, errs string, want ...string) int64 {
	e.t.Helper()
	if code != ExitFailed {
		e.t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	r := e.history()[0]
	e.t.Logf("run %d %s: %s", r.ID, r.Status, r.Reason)
	if r.Status != "failed" || r.Reason == "" {
		e.t.Errorf("run %d recorded %s (%q), want failed with a reason", r.ID, r.Status, r.Reason)
	}
	for _, w := range want {
		if !strings.Contains(r.Reason, w) || !strings.Contains(out+errs, w) {
			e.t.Errorf("error does not mention %q: recorded %q\nstdout:\n%s\nstderr:\n%s", w, r.Reason, out, errs)
		}
	}
	if files := e.outputs(fmt.Sprintf("%06d", r.ID)); len(files) != 0 {
		e.t.Errorf("the failed run left %v", files)
	}
	ents, _ := os.ReadDir(e.outbox)
	for _, d := range ents {
		if strings.Contains(d.Name(), ".tmp") {
			e.t.Errorf("the failed run left the temporary file %s", d.Name())
		}
	}
	return r.ID
}

// faultProxy stands between contactsync and slapd and lets a test act at
// a chosen point of the conversation: once the server has sent `after`
// bytes, midAnswer runs before the next bytes are passed on, and
// betweenPages runs when the client next speaks (asks for the next page),
// after which the connection is cut.
type faultProxy struct {
	ln     net.Listener
	target string

	mu           sync.Mutex
	served       int64
	after        int64
	midAnswer    func()
	betweenPages func()
	// afterPage, when set, runs once the server has answered that many
	// searches (pages) completely, and the connection is then cut: the
	// client has a whole page and a cookie, and nothing more.
	afterPage int
	pageCut   func()
	pagesSeen int
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go p.serve()
	return p
}

func (p *faultProxy) arm(after int64, midAnswer, betweenPages func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.served, p.after, p.midAnswer, p.betweenPages = 0, after, midAnswer, betweenPages
}

// take returns the hook due now, once.
func (p *faultProxy) take(between bool) func() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.after == 0 || p.served < p.after {
		return nil
	}
	var f *func()
	if between {
		f = &p.betweenPages
	} else {
		f = &p.midAnswer
	}
	h := *f
	*f = nil
	return h
}

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		go p.pipe(c, up)
	}
}

func (p *faultProxy) pipe(client, up net.Conn) {
	defer client.Close()
	defer up.Close()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if h := p.take(true); h != nil {
					h()
					client.Close()
					up.Close()
					return
				}
				if _, werr := up.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				up.Close()
				return
			}
		}
	}()
	p.mu.Lock()
	framed := p.pageCut != nil
	p.mu.Unlock()
	if framed {
		p.pipePages(client, up)
		return
	}
	buf := make([]byte, 4<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
			p.mu.Lock()
			p.served += int64(n)
			p.mu.Unlock()
			if h := p.take(false); h != nil {
				h()
			}
		}
		if err != nil {
			return
		}
	}
}

// pipePages passes the server's answers on one LDAP message at a time and
// cuts the connection right after the afterPage-th SearchResultDone.
func (p *faultProxy) pipePages(client, up net.Conn) {
	r := bufio.NewReaderSize(up, 64<<10)
	for {
		msg, err := readBERMessage(r)
		if err != nil {
			return
		}
		if _, err := client.Write(msg); err != nil {
			return
		}
		if ldapOp(msg) != 0x65 { // SearchResultDone
			continue
		}
		p.mu.Lock()
		p.pagesSeen++
		var h func()
		if p.pagesSeen == p.afterPage {
			h, p.pageCut = p.pageCut, nil
		}
		p.mu.Unlock()
		if h != nil {
			h()
			client.Close()
			return
		}
	}
}

// readBERMessage reads one LDAPMessage (a BER SEQUENCE) whole.
func readBERMessage(r *bufio.Reader) ([]byte, error) {
	head := make([]byte, 2, 6)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, err
	}
	size := int(head[1])
	if size&0x80 != 0 {
		n := size & 0x7f
		ext := make([]byte, n)
		if _, err := io.ReadFull(r, ext); err != nil {
			return nil, err
		}
		head = append(head, ext...)
		size = 0
		for _, b := range ext {
			size = size<<8 | int(b)
		}
	}
	msg := make([]byte, len(head)+size)
	copy(msg, head)
	_, err := io.ReadFull(r, msg[len(head):])
	return msg, err
}

// ldapOp returns the protocolOp tag of an LDAPMessage: after the SEQUENCE
// header comes the messageID INTEGER, then the operation.
func ldapOp(msg []byte) byte {
	i := 2
	if msg[1]&0x80 != 0 {
		i += int(msg[1] & 0x7f)
	}
	if i+1 >= len(msg) {
		return 0
	}
	i += 2 + int(msg[i+1]) // messageID: tag, short length, value
	if i >= len(msg) {
		return 0
	}
	return msg[i]
}

func supplierLDIF(n int) string {
	var b strings.Builder
	b.WriteString("dn: ou=suppliers,dc=example,dc=org\nobjectClass: organizationalUnit\nou: suppliers\n\n")
	for i := range n {
		fmt.Fprintf(&b, "dn: uid=s%05d,ou=suppliers,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: s%05d\ncn: Supplier %d\nsn: S%d\n"+
			"telephoneNumber: +33 1 23 %02d %02d %02d\nmail: s%d@example.com\n\n", i, i, i, i, i/10000, (i/100)%100, i%100, i)
	}
	return b.String()
}

const ldapFaultConfig = `state: state.db
listen: ""
jobs:
  - name: dir
    source:
      ldap:
        url: %q
        bind_dn: "cn=reader,ou=service,dc=example,dc=org"
        bind_password_file: ldap.password
        base_dn: "ou=suppliers,dc=example,dc=org"
        filter: "(objectClass=inetOrgPerson)"
        page_size: %d
        incremental: "off"
    mapping:
      display_name: "{{.cn}}"
      phones: [{value: "{{.telephoneNumber}}", type: work}]
      phone_region: FR
      email: "{{.mail}}"
    sink:
      csv: {dir: outbox}
    safety: {max_deletes: 100000, max_delete_percent: 100}
`

func TestFaultLDAPServerDies(t *testing.T) {
	const entries = 600
	tests := []struct {
		name     string
		pageSize int
		arm      func(p *faultProxy, s *ldaptest.Slapd, t *testing.T)
	}{
		{"killed mid-search", 50, func(p *faultProxy, s *ldaptest.Slapd, t *testing.T) {
			p.arm(40<<10, s.Kill, nil)
		}},
		// The client holds three whole pages and a cookie when the server
		// goes. If go-ldap notices the closed connection before the client
		// asks for the next page (a race: about half the runs before the
		// fix in sources/ldap), it ends that search without an error, and
		// the run used to delete every entry of the missing pages.
		{"gone right after a page", 50, func(p *faultProxy, s *ldaptest.Slapd, t *testing.T) {
			p.mu.Lock()
			p.pagesSeen, p.afterPage, p.pageCut = 0, 3, s.Kill
			p.mu.Unlock()
		}},
		{"restarted between pages", 50, func(p *faultProxy, s *ldaptest.Slapd, t *testing.T) {
			p.arm(40<<10, nil, func() {
				s.Kill()
				if err := s.Restart(); err != nil {
					t.Error(err)
				}
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ldaptest.StartSlapd(t, ldaptest.SlapdOptions{ExtraLDIF: supplierLDIF(entries)})
			p := newFaultProxy(t, strings.TrimPrefix(s.URL, "ldap://"))
			e := newEnv(t, "10")
			cfg := fmt.Sprintf(ldapFaultConfig, "ldap://"+p.ln.Addr().String(), tt.pageSize)
			if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(e.dir, "ldap.password"), []byte(s.ReaderPass+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if out := e.mustRun(ExitOK, "sync"); !strings.Contains(out, fmt.Sprintf("created %d,", entries)) {
				t.Fatalf("first run:\n%s", out)
			}
			before := stateOf(t, e, "dir")
			tt.arm(p, s, t)
			code, out, errs := e.run("sync")
			e.failedRun(code, out, errs, "source")
			if s.Kill(); true {
				if err := s.Restart(); err != nil {
					t.Fatal(err)
				}
			}
			if after := stateOf(t, e, "dir"); after != before {
				t.Errorf("the failed run changed the state")
			}
			if out := e.mustRun(ExitOK, "sync"); !strings.Contains(out, fmt.Sprintf("created 0, updated 0, deleted 0; unchanged %d", entries)) {
				t.Errorf("next run:\n%s", out)
			}
			if strings.Contains(out+errs, s.ReaderPass) {
				t.Error("the bind password appears in the output")
			}
		})
	}
}

// stateOf renders the job's stored contacts, read straight from the file.
func stateOf(t *testing.T, e *env, job string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(e.dir, "state.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT * FROM entries WHERE job = ? ORDER BY key`, job)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%v\n", vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestFaultOutboxFullOrReadOnly(t *testing.T) {
	probe := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): %v %s", err, out)
	}
	_ = exec.Command("umount", probe).Run()
	tests := []struct{ name, opts, want string }{
		{"full", "size=16k", "no space left on device"},
		{"read-only", "ro,size=1m", "read-only file system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := safetyEnv(t, "      max_delete_percent: 100")
			e.dropRecords(seq(1, 3)...)
			e.mustRun(ExitOK, "sync")
			before := stateOf(t, e, "crm")
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", tt.opts, "tmpfs", e.outbox).CombinedOutput(); err != nil {
				t.Fatalf("mount: %v %s", err, out)
			}
			mounted := true
			unmount := func() {
				if mounted {
					if out, err := exec.Command("umount", e.outbox).CombinedOutput(); err != nil {
						t.Errorf("umount: %v %s", err, out)
					}
					mounted = false
				}
			}
			t.Cleanup(unmount)
			e.dropRecords(seq(1, 2000)...) // about 100 KB of import file
			code, out, errs := e.run("sync")
			e.failedRun(code, out, errs, tt.want)
			if after := stateOf(t, e, "crm"); after != before {
				t.Error("the failed run changed the state")
			}
			unmount()
			// The drop was not consumed: the next run emits it whole.
			out = e.mustRun(ExitOK, "sync")
			if !strings.Contains(out, "created 1997, updated 0, deleted 0; unchanged 3") {
				t.Errorf("next run:\n%s", out)
			}
		})
	}
}

func TestFaultStateLocked(t *testing.T) {
	e := safetyEnv(t, "      max_delete_percent: 100")
	e.dropRecords(seq(1, 3)...)
	e.mustRun(ExitOK, "sync")
	before := stateOf(t, e, "crm")

	// Another process holds a write transaction on the state file.
	db, err := sql.Open("sqlite3", filepath.Join(e.dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	e.dropRecords(seq(1, 5)...)
	code, out, errs := e.run("sync")
	t.Logf("exit %d: %s%s", code, out, errs)
	if code != ExitFailed || !strings.Contains(out+errs, "database is locked: another process has been writing to the state file") {
		t.Errorf("exit %d, want 1 with an error that says the state is locked and by what\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if files := e.outputs("000002"); len(files) != 0 {
		t.Errorf("wrote %v", files)
	}
	// Auditing only reads, which WAL lets it do beside a writer: waiting
	// for the writer, it would fail as the sync did.
	if runs := e.history(); len(runs) != 1 || runs[0].Status != "ok" {
		t.Errorf("history while the state is locked: %+v", runs)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if after := stateOf(t, e, "crm"); after != before {
		t.Error("the failed run changed the state")
	}
	out = e.mustRun(ExitOK, "sync")
	if !strings.Contains(out, "created 2, updated 0, deleted 0; unchanged 3") {
		t.Errorf("next run:\n%s", out)
	}
	for _, r := range e.history() {
		if r.Status == "running" {
			t.Errorf("run %d is still recorded as running", r.ID)
		}
	}
}

// TestFaultStateDeleted follows the recovery procedure of
// docs/reliability.md: the state file is lost; reconcile with a Control
// Hub export rebuilds the bindings, and the next sync creates nothing.
func TestFaultStateDeleted(t *testing.T) {
	e := safetyEnv(t, "      max_delete_percent: 100")
	e.dropRecords(seq(1, 20)...)
	e.mustRun(ExitOK, "sync")
	e.reconcileAll("crm", "000001") // uploaded; the export gave the UUIDs
	export := filepath.Join(e.dir, "export-000001.csv")
	before := stateOf(t, e, "crm")

	for _, f := range []string{"state.db", "state.db-wal", "state.db-shm"} {
		_ = os.Remove(filepath.Join(e.dir, f))
	}
	// A plan on the empty state shows the danger: everything again.
	if out := e.mustRun(ExitOK, "plan"); !strings.Contains(out, "would be created 20") {
		t.Errorf("plan on a lost state:\n%s", out)
	}
	out := e.mustRun(ExitOK, "reconcile", "--job", "crm", export)
	if !strings.Contains(strings.Join(strings.Fields(out), " "), "adopted 20") {
		t.Errorf("reconcile on a lost state:\n%s", out)
	}
	out = e.mustRun(ExitOK, "sync")
	if !strings.Contains(out, "created 0, updated 0, deleted 0; unchanged 20") {
		t.Errorf("sync after the rebuild:\n%s", out)
	}
	for _, r := range e.history() {
		if r.Kind == "sync" && r.Created != 0 {
			t.Errorf("run %d created %d contacts after the rebuild", r.ID, r.Created)
		}
	}
	if after := stateOf(t, e, "crm"); after != before {
		t.Errorf("rebuilt state differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestFaultWebex5xxStorm answers 503 to every call after the first bulk
// write, for longer than the run's max_wait.
func TestFaultWebex5xxStorm(t *testing.T) {
	sim := simulator.New(simulator.Options{OrgID: wxOrg, Token: wxToken})
	var mu sync.Mutex
	storm, bulks := false, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s := storm
		mu.Unlock()
		if s {
			http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
			return
		}
		sim.ServeHTTP(w, r)
		if strings.HasSuffix(r.URL.Path, "/bulk") {
			mu.Lock()
			if bulks++; bulks == 1 {
				storm = true
			}
			mu.Unlock()
		}
	}))
	defer srv.Close()
	e := &wxEnv{env: newEnv(t, "10"), sim: sim}
	e.writeSecret("webex.token", wxToken)
	e.setSink(fmt.Sprintf("      webex: {base_url: %q, org_id: %s, token_file: webex.token, requests_per_second: 1000, batch_size: 100, concurrency: 1, max_wait: 2s}", srv.URL+"/v1", wxOrg))
	recs := sups(seq(1, 250)...)
	e.drop(recs)
	code, out, errs := e.run("sync")
	e.failedRun(code, out, errs, "503")
	if sim.Len() != 100 {
		t.Errorf("the organization holds %d contacts after the first bulk call, want 100", sim.Len())
	}
	mu.Lock()
	storm = false
	mu.Unlock()
	e.mustRun(ExitOK, "sync")
	e.exactlyOnce(recs, 0)
	if out := e.mustRun(ExitOK, "sync", "--full"); !strings.Contains(out, "created 0, updated 0, deleted 0; unchanged 250") {
		t.Errorf("a full run after the recovery:\n%s", out)
	}
}
