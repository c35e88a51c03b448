package cli

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while the daemon writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunDaemon starts `contactsync run` in-process on a one-second
// schedule, checks that it runs the job, that a second process on the same
// state is refused while it runs, that SIGHUP with a broken configuration
// keeps the old one, and that cancelling it (SIGTERM) stops it cleanly.
func TestRunDaemon(t *testing.T) {
	e := safetyEnv(t, "      max_deletes: 10")
	cfg, _ := os.ReadFile(e.config)
	good := strings.Replace(string(cfg), "  - name: crm\n", "  - name: crm\n    schedule: \"@every 1s\"\n", 1)
	if err := os.WriteFile(e.config, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	e.dropRecords(1, 2, 3)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := make(chan struct{}, 1)
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, IO{Args: []string{"run", "-c", e.config}, Stdout: &stdout, Stderr: &stderr, Reload: reload})
	}()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\nstderr:\n%s", what, stderr.String())
			}
			select {
			case code := <-done:
				t.Fatalf("daemon exited %d while waiting for %s\nstderr:\n%s", code, what, stderr.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	waitFor("a scheduled run", func() bool { return strings.Contains(stderr.String(), "run finished") })

	code, _, errs := e.run("sync")
	if code != ExitFailed || !strings.Contains(errs, "in use by another contactsync process") {
		t.Errorf("second instance: exit %d, stderr %q", code, errs)
	}

	if err := os.WriteFile(e.config, []byte("jobs: [oops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := strings.Count(stderr.String(), "run finished")
	reload <- struct{}{}
	// The old configuration keeps running its job.
	waitFor("a run after the refused reload", func() bool { return strings.Count(stderr.String(), "run finished") > before+1 })
	if !strings.Contains(stderr.String(), "configuration refused") {
		t.Errorf("the broken configuration was not reported as refused:\n%s", stderr.String())
	}

	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("daemon exit %d\nstderr:\n%s", code, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("daemon did not stop")
	}
	if err := os.WriteFile(e.config, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	runs := e.history()
	if len(runs) < 2 || runs[len(runs)-1].Created != 3 {
		t.Errorf("history after the daemon: %+v", runs)
	}
	for _, r := range runs {
		if r.Status == "running" {
			t.Errorf("run %d left running", r.ID)
		}
	}
}
