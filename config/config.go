// Package config loads contactsync's YAML configuration, reports every
// problem with its YAML path at once, and builds the jobs it describes from
// the sources and sinks registered in one explicit map.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/daemon"
	"github.com/contactsync/contactsync/notify"
	"github.com/contactsync/contactsync/sinks/csvfile"
	"github.com/contactsync/contactsync/sinks/webexapi"
	"github.com/contactsync/contactsync/sources/csvdrop"
	"github.com/contactsync/contactsync/sources/ldap"
)

// DefaultPath is where the configuration lives when -c is not given.
const DefaultPath = "/etc/contactsync/config.yaml"

// Sources are the kinds of source, by their key under `source:`.
var Sources = map[string]func() connector.SourceConfig{
	"csv":  func() connector.SourceConfig { return new(csvdrop.Config) },
	"ldap": func() connector.SourceConfig { return new(ldap.Config) },
}

// Sinks are the kinds of sink, by their key under `sink:`.
var Sinks = map[string]func() connector.SinkConfig{
	"csv":   func() connector.SinkConfig { return new(csvfile.Config) },
	"webex": func() connector.SinkConfig { return new(webexapi.Config) },
}

// Config is the whole configuration file.
type Config struct {
	State  string         `yaml:"state"`
	Log    LogConfig      `yaml:"log"`
	Listen *string        `yaml:"listen"`
	Jobs   []JobConfig    `yaml:"jobs"`
	Audit  AuditConfig    `yaml:"audit"`
	Notify *notify.Config `yaml:"notify"`

	path string
	hash string
}

// LogConfig is `log:`.
type LogConfig struct {
	Format string `yaml:"format"` // text | json
	Level  string `yaml:"level"`  // debug | info | warn | error
}

// AuditConfig is `audit:`.
type AuditConfig struct {
	KeepDays *int `yaml:"keep_days"`
}

// JobConfig is one entry of `jobs:`.
type JobConfig struct {
	Name         string                  `yaml:"name"`
	Schedule     string                  `yaml:"schedule"`
	FullSchedule string                  `yaml:"full_schedule"`
	Source       SourceSpec              `yaml:"source"`
	Mapping      connector.MappingConfig `yaml:"mapping"`
	Sink         SinkSpec                `yaml:"sink"`
	Safety       connector.SafetyConfig  `yaml:"safety"`
}

// SourceSpec is `source:`: exactly one kind, with its configuration.
type SourceSpec struct {
	Kind   string
	Config connector.SourceConfig
}

// SinkSpec is `sink:`: exactly one kind, with its configuration.
type SinkSpec struct {
	Kind   string
	Config connector.SinkConfig
}

// UnmarshalYAML decodes the one kind present; checkKeys has already
// reported anything else.
func (s *SourceSpec) UnmarshalYAML(n *yaml.Node) error {
	kind, val, err := onlyKind(n, "source")
	if err != nil || kind == "" {
		return err
	}
	mk, ok := Sources[kind]
	if !ok {
		return nil
	}
	s.Kind, s.Config = kind, mk()
	return val.Decode(s.Config)
}

// UnmarshalYAML decodes the one kind present.
func (s *SinkSpec) UnmarshalYAML(n *yaml.Node) error {
	kind, val, err := onlyKind(n, "sink")
	if err != nil || kind == "" {
		return err
	}
	mk, ok := Sinks[kind]
	if !ok {
		return nil
	}
	s.Kind, s.Config = kind, mk()
	return val.Decode(s.Config)
}

func onlyKind(n *yaml.Node, what string) (string, *yaml.Node, error) {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return "", nil, nil // reported by checkKeys
	}
	return n.Content[0].Value, n.Content[1], nil
}

var jobName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// Load reads and validates the configuration file. Problems are returned
// together as connector.Problems.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, abs)
}

// Parse validates configuration data that lives at path (relative file
// names in it are relative to path's folder).
func Parse(data []byte, path string) (*Config, error) {
	v := connector.NewValidator(filepath.Dir(path))
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, connector.Problems{{Message: fmt.Sprintf("%s: %v", path, err)}}
	}
	if len(doc.Content) == 0 {
		return nil, connector.Problems{{Message: path + ": the file is empty"}}
	}
	checkKeys(doc.Content[0], configType, v)
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(c); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, connector.Problems{{Message: fmt.Sprintf("%s: %v", path, err)}}
		}
		for _, e := range te.Errors {
			v.Errorf("", "%s", e)
		}
	}
	c.path = path
	sum := sha256.Sum256(data)
	c.hash = hex.EncodeToString(sum[:8])
	c.validate(v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Path returns the file the configuration was read from.
func (c *Config) Path() string { return c.path }

// Hash identifies the configuration's content, for the audit.
func (c *Config) Hash() string { return c.hash }

// ListenAddr returns the daemon's HTTP address ("" turns it off).
func (c *Config) ListenAddr() string {
	if c.Listen == nil {
		return "127.0.0.1:9464"
	}
	return *c.Listen
}

// KeepDays returns the audit retention.
func (c *Config) KeepDays() int {
	if c.Audit.KeepDays == nil {
		return 400
	}
	return *c.Audit.KeepDays
}

func (c *Config) validate(v *connector.Validator) {
	if c.State == "" {
		c.State = "/var/lib/contactsync/state.db"
	}
	v.ResolvePath(&c.State)
	switch c.Log.Format {
	case "":
		c.Log.Format = "text"
	case "text", "json":
	default:
		v.At("log").Errorf("format", "must be text or json, not %q", c.Log.Format)
	}
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		v.At("log").Errorf("level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	if c.Listen != nil && *c.Listen != "" {
		if _, _, err := net.SplitHostPort(*c.Listen); err != nil {
			v.Errorf("listen", "must be host:port or \"\": %v", err)
		}
	}
	if c.Audit.KeepDays != nil && *c.Audit.KeepDays < 0 {
		v.At("audit").Errorf("keep_days", "must be 0 (keep everything) or more, not %d", *c.Audit.KeepDays)
	}
	if c.Notify != nil {
		c.Notify.Validate(v.At("notify"))
	}
	if len(c.Jobs) == 0 {
		v.Errorf("jobs", "at least one job is needed")
	}
	names := map[string]int{}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		jv := v.At("jobs").Index(i)
		switch {
		case j.Name == "":
			jv.Errorf("name", "must be set")
		case !jobName.MatchString(j.Name):
			jv.Errorf("name", "%q must match [a-z0-9_-]+", j.Name)
		}
		if prev, dup := names[j.Name]; dup && j.Name != "" {
			jv.Errorf("name", "%q is already the name of jobs[%d]", j.Name, prev)
		}
		names[j.Name] = i
		for key, spec := range map[string]string{"schedule": j.Schedule, "full_schedule": j.FullSchedule} {
			if spec == "" {
				continue
			}
			// The daemon's own parser, so that what passes here runs there.
			if _, err := daemon.ParseSchedule(spec); err != nil {
				jv.Errorf(key, "%v", err)
			}
		}
		if j.Source.Config != nil {
			j.Source.Config.Validate(jv.At("source").At(j.Source.Kind))
		}
		if j.Sink.Config != nil {
			j.Sink.Config.Validate(jv.At("sink").At(j.Sink.Kind))
		}
		j.Mapping.Validate(jv.At("mapping"))
		j.Safety.Validate(jv.At("safety"))
	}
}

// Job returns the configuration of the job named name.
func (c *Config) Job(name string) (*JobConfig, bool) {
	for i := range c.Jobs {
		if c.Jobs[i].Name == name {
			return &c.Jobs[i], true
		}
	}
	return nil, false
}

// Build opens the sources and sinks of the named jobs (all when names is
// empty) and compiles their mappings.
func (c *Config) Build(names []string, logger *slog.Logger, store connector.Store) ([]*connector.Job, error) {
	var jobs []*connector.Job
	for _, n := range names {
		if _, ok := c.Job(n); !ok {
			return nil, fmt.Errorf("config: no job named %q (jobs: %s)", n, strings.Join(c.JobNames(), ", "))
		}
	}
	for i := range c.Jobs {
		jc := &c.Jobs[i]
		if len(names) > 0 && !slices.Contains(names, jc.Name) {
			continue
		}
		j, err := c.build(jc, logger, store)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// JobNames lists the configured jobs.
func (c *Config) JobNames() []string {
	out := make([]string, len(c.Jobs))
	for i := range c.Jobs {
		out[i] = c.Jobs[i].Name
	}
	return out
}

func (c *Config) build(jc *JobConfig, logger *slog.Logger, store connector.Store) (*connector.Job, error) {
	env := connector.Env{Job: jc.Name, Logger: logger.With("job", jc.Name), Store: store}
	m, err := jc.Mapping.Compile()
	if err != nil {
		return nil, fmt.Errorf("jobs.%s.mapping: %w", jc.Name, err)
	}
	src, err := jc.Source.Config.Open(env)
	if err != nil {
		return nil, fmt.Errorf("jobs.%s.source.%s: %w", jc.Name, jc.Source.Kind, err)
	}
	sink, err := jc.Sink.Config.Open(env)
	if err != nil {
		return nil, fmt.Errorf("jobs.%s.sink.%s: %w", jc.Name, jc.Sink.Kind, err)
	}
	return &connector.Job{
		Name:        jc.Name,
		Source:      src,
		Sink:        sink,
		Mapping:     m,
		PhoneRegion: jc.Mapping.PhoneRegion,
		Safety:      jc.Safety.Safety(),
		ConfigHash:  c.hash,
		KeepDays:    c.KeepDays(),
	}, nil
}
