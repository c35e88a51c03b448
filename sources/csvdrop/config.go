// Package csvdrop is the CRM CSV drop-folder source (source.csv): it reads
// the CSV exports a CRM drops into a folder, one record per row.
//
// In snapshot mode a file is the whole list: a run reads the newest file it
// has not read before and skips older ones. In changes mode every new file
// is read, oldest first, each row an upsert. A file is "new" when its
// (modification time, name) comes after the last file read, which the
// cursor remembers. Files are streamed: a 150 MB export is never held in
// memory.
package csvdrop

import (
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// Modes of a drop folder.
const (
	ModeSnapshot = "snapshot"
	ModeChanges  = "changes"
)

// DefaultSettle is how long a file must have been left unmodified before it
// is read.
const DefaultSettle = 2 * time.Second

// Config is the configuration of a CSV drop folder:
//
//	source:
//	  csv:
//	    dir: /srv/crm-drop        # relative: to the configuration file's folder
//	    pattern: "*.csv"          # file names to read (filepath.Match); dot files are ignored
//	    key: Supplier ID          # column holding the stable record key (case-insensitive)
//	    mode: snapshot            # snapshot: a file is the whole list | changes: a file holds upserts
//	    delimiter: auto           # auto , ; tab
//	    encoding: auto            # auto utf-8 windows-1252 iso-8859-1 utf-16
//	    settle: 2s                # a file modified more recently than this is still being written
type Config struct {
	Dir       string `yaml:"dir"`
	Pattern   string `yaml:"pattern"`
	Key       string `yaml:"key"`
	Mode      string `yaml:"mode"`
	Delimiter string `yaml:"delimiter"`
	Encoding  string `yaml:"encoding"`
	Settle    string `yaml:"settle"`
}

var _ connector.SourceConfig = (*Config)(nil)

// Validate reports every problem under v, fills in defaults and makes dir
// absolute. It does not look at the folder: Check does.
func (c *Config) Validate(v *connector.Validator) {
	v.Required("dir", c.Dir)
	v.ResolvePath(&c.Dir)
	if c.Pattern == "" {
		c.Pattern = "*.csv"
	}
	if _, err := filepath.Match(c.Pattern, ""); err != nil {
		v.Errorf("pattern", "%q is not a valid file pattern: %v", c.Pattern, err)
	} else if strings.ContainsRune(c.Pattern, '/') {
		v.Errorf("pattern", "%q must name files in dir, without a folder", c.Pattern)
	}
	v.Required("key", c.Key)
	switch c.Mode {
	case "":
		c.Mode = ModeSnapshot
	case ModeSnapshot, ModeChanges:
	default:
		v.Errorf("mode", "must be snapshot or changes, not %q", c.Mode)
	}
	if c.Delimiter == "" {
		c.Delimiter = delimAuto
	}
	if _, ok := delimiterRune(c.Delimiter); !ok {
		v.Errorf("delimiter", "must be auto, \",\", \";\" or tab, not %q", c.Delimiter)
	}
	switch c.Encoding {
	case "":
		c.Encoding = encAuto
	case encAuto, encUTF8, encCP1252, encLatin1, encUTF16:
	default:
		v.Errorf("encoding", "must be auto, utf-8, windows-1252, iso-8859-1 or utf-16, not %q", c.Encoding)
	}
	if c.Settle != "" {
		if d, err := time.ParseDuration(c.Settle); err != nil || d < 0 {
			v.Errorf("settle", "must be a duration such as 2s or 1m, not %q", c.Settle)
		}
	}
}

// Open makes the source. It does not touch the folder.
func (c *Config) Open(env connector.Env) (connector.Source, error) {
	cc := *c
	v := connector.NewValidator("")
	cc.Validate(v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	settle := DefaultSettle
	if cc.Settle != "" {
		settle, _ = time.ParseDuration(cc.Settle)
	}
	comma, _ := delimiterRune(cc.Delimiter)
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{
		dir:     cc.Dir,
		pattern: cc.Pattern,
		mode:    cc.Mode,
		settle:  settle,
		opt: readOptions{
			key:       strings.ToLower(strings.TrimSpace(cc.Key)),
			keyLabel:  strings.TrimSpace(cc.Key),
			delimiter: comma,
			encoding:  cc.Encoding,
		},
		job:   env.Job,
		store: env.Store,
		log:   log.With("source", "csv", "dir", cc.Dir),
		now:   time.Now,
	}, nil
}
