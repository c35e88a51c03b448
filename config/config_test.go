package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contactsync/contactsync/connector"
)

const minimal = `
jobs:
  - name: crm
    schedule: "CRON_TZ=Europe/Paris 0 2 * * *"
    source:
      csv: {dir: drop, key: id}
    mapping:
      display_name: "{{.name}}"
      phones: [{value: "{{.phone}}", type: work}]
    sink:
      csv: {dir: outbox}
`

func TestParseDefaultsAndPaths(t *testing.T) {
	c, err := Parse([]byte(minimal), "/etc/contactsync/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.State != "/var/lib/contactsync/state.db" {
		t.Errorf("state %q", c.State)
	}
	if c.ListenAddr() != "127.0.0.1:9464" || c.KeepDays() != 400 || c.Log.Format != "text" || c.Log.Level != "info" {
		t.Errorf("defaults: listen %q keep %d log %+v", c.ListenAddr(), c.KeepDays(), c.Log)
	}
	j, ok := c.Job("crm")
	if !ok || j.Source.Kind != "csv" || j.Sink.Kind != "csv" {
		t.Fatalf("job %+v", j)
	}
	c2, err := Parse([]byte("state: var/state.db\n"+minimal), "/srv/cs/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c2.State != filepath.Join("/srv/cs", "var/state.db") {
		t.Errorf("relative state resolved to %q", c2.State)
	}
	if c.Hash() == c2.Hash() || c.Hash() == "" {
		t.Errorf("hashes %q %q", c.Hash(), c2.Hash())
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown top-level key", "colour: blue\n" + minimal, []string{"colour: unknown key (line 1)"}},
		{"no jobs", "state: x.db\n", []string{"jobs: at least one job is needed"}},
		{"two sources", strings.Replace(minimal, "      csv: {dir: drop, key: id}", "      csv: {dir: drop, key: id}\n      ldap: {url: ldap://x}", 1),
			[]string{"jobs[0].source: must hold exactly one of csv, ldap, not csv and ldap"}},
		{"unknown sink kind", strings.Replace(minimal, "      csv: {dir: outbox}", "      s3: {bucket: x}", 1),
			[]string{`jobs[0].sink.s3: unknown sink kind (want one of: csv, webex)`}},
		{"unknown nested key", strings.Replace(minimal, "key: id}", "key: id, colour: red}", 1),
			[]string{"jobs[0].source.csv.colour: unknown key"}},
		{"bad schedule", strings.Replace(minimal, `"CRON_TZ=Europe/Paris 0 2 * * *"`, `"61 * * * *"`, 1),
			[]string{"jobs[0].schedule:"}},
		{"duplicate names", minimal + strings.TrimPrefix(strings.SplitN(minimal, "jobs:\n", 2)[1], ""),
			[]string{`jobs[1].name: "crm" is already the name of jobs[0]`}},
		{"type error", "audit: {keep_days: many}\n" + minimal, []string{"cannot unmarshal"}},
		{"bad listen", "listen: nowhere\n" + minimal, []string{"listen: must be host:port"}},
		{"several at once", "log: {format: xml, level: loud}\n" + minimal,
			[]string{`log.format: must be text or json, not "xml"`, `log.level: must be debug, info, warn or error, not "loud"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "/etc/contactsync/config.yaml")
			var ps connector.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("err = %v, want Problems", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%s", w, err)
				}
			}
		})
	}
}
