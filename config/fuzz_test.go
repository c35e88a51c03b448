package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// fuzzPath is where the fuzzed configuration pretends to live: a folder
// that does not exist, so that relative paths resolve somewhere harmless.
const fuzzPath = "/nonexistent/contactsync/config.yaml"

// FuzzConfigLoad feeds arbitrary bytes through Parse. It must not panic nor
// hang, and every problem it reports must say where: a YAML path, a line,
// or the file. Seeds: testdata/fuzz/FuzzConfigLoad.
func FuzzConfigLoad(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(""))
	f.Add([]byte("jobs: [{name: a, source: {csv: {dir: d, key: k}}, sink: {webex: {org_id: x, token_file: t}}}]\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("jobs:\n  - name: x\n    mapping: {display_name: \"{{.a\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return // large inputs test the YAML library's speed, not our checks
		}
		done := make(chan error, 1)
		go func() {
			_, err := Parse(data, fuzzPath)
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(time.Minute): // a hang, not a speed limit
			t.Fatalf("Parse did not return within a minute on %q", data)
		}
		if err == nil {
			return
		}
		var ps connector.Problems
		if !errors.As(err, &ps) {
			t.Fatalf("Parse returned %T %v, want connector.Problems", err, err)
		}
		if len(ps) == 0 {
			t.Fatal("Parse returned an empty Problems")
		}
		for _, p := range ps {
			if p.Path == "" && !strings.Contains(p.Message, "line ") && !strings.HasPrefix(p.Message, fuzzPath+": ") {
				t.Errorf("problem %q names neither a YAML path, a line nor the file", p.Message)
			}
		}
	})
}
