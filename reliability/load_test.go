package reliability

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const loadConfig = `state: state.db
log: {format: json, level: info}
listen: %s
jobs:
  - name: big
    schedule: "@every 5s"
    source:
      csv: {dir: drop-big, key: id}
    mapping:
      display_name: "{{.name}}"
      phones: [{value: "{{.phone}}", type: work}]
      email: "{{.email}}"
      title: "{{.title}}"
    sink:
      csv: {dir: outbox-big, max_rows: 10000}
  - name: small
    schedule: "@every 2s"
    source:
      csv: {dir: drop-small, key: id}
    mapping:
      display_name: "{{.name}}"
      phones: [{value: "{{.phone}}", type: work}]
    sink:
      csv: {dir: outbox-small}
`

// TestLoadMillion runs the daemon with a job of 1,000,000 contacts beside
// a small job that fires every 2 seconds, scrapes /metrics every second,
// and reports the peak resident memory. Opt-in: CONTACTSYNC_LOAD=1.
func TestLoadMillion(t *testing.T) {
	if os.Getenv("CONTACTSYNC_LOAD") != "1" {
		t.Skip("set CONTACTSYNC_LOAD=1 to run the million-contact load test (minutes)")
	}
	n := 1000000
	if s := os.Getenv("CONTACTSYNC_LOAD_RECORDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	in := newInstall(t, fmt.Sprintf(loadConfig, addr))
	for _, d := range []string{"drop-big", "drop-small"} {
		if err := os.MkdirAll(filepath.Join(in.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeBig(t, filepath.Join(in.dir, "drop-big", "big.csv"), n)
	small := newPopulation(1000)
	old := time.Now().Add(-time.Hour)
	for i, d := range []string{"drop-big/big.csv", "drop-small/small.csv"} {
		p := filepath.Join(in.dir, d)
		if i == 1 {
			if err := os.WriteFile(p, small.csv(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}

	cmd := in.command("run")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	okRuns := regexp.MustCompile(`contactsync_runs_total\{job="(big|small)",status="(\w+)"\} (\d+)`)
	rssRe := regexp.MustCompile(`(?m)^process_resident_memory_bytes (\S+)`)
	var scrapes, scrapeErrors int
	var peakRSS float64
	var bigOK, smallOK, failed int
	for time.Since(start) < 15*time.Minute {
		time.Sleep(time.Second) // the scrape interval under test
		resp, err := http.Get("http://" + addr + "/metrics")
		scrapes++
		if err != nil {
			if time.Since(start) > 10*time.Second {
				scrapeErrors++
			}
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			scrapeErrors++
			continue
		}
		if m := rssRe.FindSubmatch(body); m != nil {
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			peakRSS = max(peakRSS, v)
		}
		bigOK, smallOK, failed = 0, 0, 0
		for _, m := range okRuns.FindAllSubmatch(body, -1) {
			c, _ := strconv.Atoi(string(m[3]))
			switch {
			case string(m[2]) != "ok":
				failed += c
			case string(m[1]) == "big":
				bigOK = c
			default:
				smallOK = c
			}
		}
		if bigOK >= 1 {
			break
		}
	}
	took := time.Since(start)
	hwm := vmHWM(t, cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	t.Logf("%d records: big job ok after %v; small job ok runs %d, failed runs %d; %d scrapes, %d scrape errors; peak RSS from metrics %.0f MiB, VmHWM %d MiB",
		n, took.Round(time.Second), smallOK, failed, scrapes, scrapeErrors, peakRSS/(1<<20), hwm>>10)
	if err != nil {
		t.Errorf("daemon exit: %v\n%s", err, tail(logs.String()))
	}
	if bigOK < 1 || smallOK < 1 || failed > 0 || scrapeErrors > 0 {
		t.Errorf("big ok %d, small ok %d, failed %d, scrape errors %d\n%s", bigOK, smallOK, failed, scrapeErrors, tail(logs.String()))
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("the daemon logged errors:\n%s", tail(logs.String()))
	}
	files, _ := filepath.Glob(filepath.Join(in.dir, "outbox-big", "big-run*-import-*.csv"))
	if want := (n + 9999) / 10000; len(files) != want {
		t.Errorf("%d import files, want %d", len(files), want)
	}
}

func writeBig(t *testing.T, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("id,name,phone,email,title\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "%d,Supplier %d,+331%08d,k%d@example.com,Buyer\n", i, i, i, i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// vmHWM is the process's peak resident set, in KiB.
func vmHWM(t *testing.T, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return kb
		}
	}
	return 0
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
