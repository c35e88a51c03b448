package reliability

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// binary is the contactsync command built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "contactsync-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "contactsync")
	build := exec.Command("go", "build", "-o", binary, "github.com/contactsync/contactsync/cmd/contactsync")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build contactsync:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func iterations(t *testing.T, def int) int {
	if s := os.Getenv("CONTACTSYNC_CRASH_ITERATIONS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CONTACTSYNC_CRASH_ITERATIONS=%q", s)
		}
		return n
	}
	return def
}

// record is one supplier of a drop. Its email derives from its key and
// never changes, so it identifies the contact in Control Hub.
type record struct {
	id           int
	name, title  string
	phoneVariant int
}

func (r record) email() string { return fmt.Sprintf("k%d@example.com", r.id) }
func (r record) phone() string { return fmt.Sprintf("+331%08d", r.id*10+r.phoneVariant%10) }

// population is the source at one moment.
type population map[int]record

func newPopulation(n int) population {
	p := make(population, n)
	for i := 1; i <= n; i++ {
		p[i] = record{id: i, name: fmt.Sprintf("Supplier %d", i), title: "Buyer"}
	}
	return p
}

// evolve returns the next night's population: some records change, some
// leave, some arrive.
func (p population) evolve(rnd *rand.Rand, gen, changes int) population {
	next := make(population, len(p))
	maxID := 0
	for id, r := range p {
		next[id] = r
		maxID = max(maxID, id)
	}
	ids := p.ids()
	for range changes {
		id := ids[rnd.Intn(len(ids))]
		r := next[id]
		switch rnd.Intn(3) {
		case 0:
			r.name = fmt.Sprintf("Supplier %d g%d", id, gen)
		case 1:
			r.title = fmt.Sprintf("Title g%d", gen)
		case 2:
			r.phoneVariant++
		}
		next[id] = r
	}
	for range changes / 2 {
		delete(next, ids[rnd.Intn(len(ids))])
	}
	for i := 1; i <= changes/2; i++ {
		id := maxID + i
		next[id] = record{id: id, name: fmt.Sprintf("Supplier %d", id), title: "New"}
	}
	return next
}

func (p population) ids() []int {
	ids := make([]int, 0, len(p))
	for id := range p {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

func (p population) csv() []byte {
	var b bytes.Buffer
	b.WriteString("id,name,phone,email,title\n")
	for _, id := range p.ids() {
		r := p[id]
		fmt.Fprintf(&b, "%d,%s,%s,%s,%s\n", id, r.name, r.phone(), r.email(), r.title)
	}
	return b.Bytes()
}

// install is a contactsync installation in a temporary folder.
type install struct {
	t      *testing.T
	dir    string
	config string
	drop   string
	outbox string
	mtime  time.Time
}

func newInstall(t *testing.T, config string) *install {
	t.Helper()
	dir := t.TempDir()
	in := &install{t: t, dir: dir, config: filepath.Join(dir, "config.yaml"), drop: filepath.Join(dir, "drop"),
		outbox: filepath.Join(dir, "outbox"), mtime: time.Now().Add(-30 * 24 * time.Hour)}
	if err := os.MkdirAll(in.drop, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return in
}

// dropPopulation writes a drop file newer than every earlier one and old
// enough to have settled.
func (in *install) dropPopulation(p population) {
	in.t.Helper()
	in.mtime = in.mtime.Add(time.Hour)
	name := filepath.Join(in.drop, fmt.Sprintf("crm-%d.csv", in.mtime.Unix()))
	if err := os.WriteFile(name, p.csv(), 0o644); err != nil {
		in.t.Fatal(err)
	}
	if err := os.Chtimes(name, in.mtime, in.mtime); err != nil {
		in.t.Fatal(err)
	}
}

func (in *install) command(args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{args[0], "-c", in.config}, args[1:]...)...)
	cmd.Dir = in.dir
	return cmd
}

// run runs a command to its end.
func (in *install) run(args ...string) (int, string, string) {
	in.t.Helper()
	cmd := in.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		in.t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func (in *install) mustRun(want int, args ...string) string {
	in.t.Helper()
	code, out, errs := in.run(args...)
	if code != want {
		in.t.Fatalf("contactsync %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errs)
	}
	return out
}

// killedRun starts a command and kills it with SIGKILL after delay (or
// lets it finish first). It reports whether the kill happened.
func (in *install) killedRun(delay time.Duration, args ...string) bool {
	in.t.Helper()
	cmd := in.command(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return false
	case <-time.After(delay):
		_ = cmd.Process.Kill()
		<-done
		return true
	}
}

type runRow struct {
	ID     int64    `json:"id"`
	Kind   string   `json:"kind"`
	Status string   `json:"status"`
	Reason string   `json:"reason"`
	Files  []string `json:"files"`
}

func (in *install) history() []runRow {
	in.t.Helper()
	var runs []runRow
	out := in.mustRun(0, "history", "--json", "--limit", "100000")
	if err := json.Unmarshal([]byte(out), &runs); err != nil {
		in.t.Fatalf("history: %v\n%s", err, out)
	}
	return runs
}

func readCSVFile(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

// calibrate times uninterrupted runs on a scratch installation: the first
// night (every record created) and a later one (changes only), so that
// kills can be spread over whole runs.
func calibrate(t *testing.T, cal *install, size, changes int) (first, night time.Duration) {
	t.Helper()
	pop := newPopulation(size)
	cal.dropPopulation(pop)
	start := time.Now()
	cal.mustRun(0, "sync")
	first = time.Since(start)
	cal.dropPopulation(pop.evolve(rand.New(rand.NewSource(1)), 1, changes))
	start = time.Now()
	cal.mustRun(0, "sync")
	night = time.Since(start)
	t.Logf("uninterrupted runs: first night (%d creates) %v, a night of %d changes %v", size, first.Round(time.Millisecond), changes, night.Round(time.Millisecond))
	return first, night
}

// killDelay picks when to kill night i's run: anywhere from the start of
// the process to a little after the end of an uninterrupted run.
func killDelay(rnd *rand.Rand, i int, first, night time.Duration) time.Duration {
	d := night
	if i == 0 {
		d = first
	}
	return time.Duration(rnd.Int63n(int64(d)*11/10 + 1))
}

// crashNight drops night i's population, kills the sync at a random moment
// (and, one night in four, the run that recovers from it too), then lets a
// sync finish. It returns the first kill's delay and how many runs died.
func (in *install) crashNight(rnd *rand.Rand, i int, pop population, first, night time.Duration) (time.Duration, int) {
	in.dropPopulation(pop)
	kills := 0
	delay := killDelay(rnd, i, first, night)
	if in.killedRun(delay, "sync") {
		kills++
	}
	if rnd.Intn(4) == 0 {
		if in.killedRun(killDelay(rnd, i, first, night), "sync") {
			kills++
		}
	}
	in.mustRun(0, "sync")
	return delay, kills
}
