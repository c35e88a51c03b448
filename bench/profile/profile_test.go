// Package profile runs contactsync's command line inside a test binary, so
// that `go test -cpuprofile/-memprofile` profiles a real sync:
//
//	go test -run TestSync -cpuprofile cpu.out ./bench/profile/ -args -sync "sync -c /path/config.yaml --full"
//
// Without -sync the test is skipped: it is a harness, not a check.
//
// A test binary's build information is not contactsync's, and the mapping's
// fingerprint (Mapping.Fingerprint) includes the module versions: the
// first run through the harness on a state written by contactsync maps and
// touches every record. Profile an unchanged rerun on the second run.
package profile

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/contactsync/contactsync/cli"
)

var syncArgs = flag.String("sync", "", "contactsync arguments to run, space separated")

func TestSync(t *testing.T) {
	if *syncArgs == "" {
		t.Skip("no -sync arguments: nothing to profile")
	}
	code := cli.Main(context.Background(), cli.IO{Args: strings.Fields(*syncArgs), Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	if code != 0 && code != cli.ExitRejected {
		t.Fatalf("contactsync exited %d", code)
	}
}
