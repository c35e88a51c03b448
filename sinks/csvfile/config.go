// Package csvfile is the Control Hub CSV sink (sink.csv): it writes each
// run's difference as Control Hub import files, a report of the contacts to
// delete by hand and a report of the rejected source records, into an outbox
// folder. It also parses the Control Hub contact export that
// `contactsync reconcile` reads to learn the UUIDs of created contacts.
package csvfile

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/contactsync/contactsync/connector"
)

// MaxRowsLimit is the number of contacts Control Hub accepts in one upload.
const MaxRowsLimit = 10000

// Config is the configuration of the CSV sink.
//
//	sink:
//	  csv:
//	    dir: /var/lib/contactsync/outbox   # required; relative to the config file's folder
//	    max_rows: 10000                    # data rows per import file, 1..10000 (0 or unset: 10000)
//	    header_from: ""                    # optional Control Hub template or export whose header row to follow
//	    bom: false                         # write a UTF-8 byte order mark at the start of every file
type Config struct {
	Dir        string `yaml:"dir"`
	MaxRows    int    `yaml:"max_rows"`
	HeaderFrom string `yaml:"header_from"`
	BOM        bool   `yaml:"bom"`
}

var _ connector.SinkConfig = (*Config)(nil)

// Validate reports every problem under v, resolves relative paths and reads
// header_from, so that a bad template is reported with its YAML path when
// the configuration is loaded rather than at the first run.
func (c *Config) Validate(v *connector.Validator) {
	v.Required("dir", c.Dir)
	v.ResolvePath(&c.Dir)
	v.ResolvePath(&c.HeaderFrom)
	switch {
	case c.MaxRows == 0:
		c.MaxRows = MaxRowsLimit
	case c.MaxRows < 1 || c.MaxRows > MaxRowsLimit:
		v.Errorf("max_rows", "must be between 1 and %d (the Control Hub upload limit), got %d", MaxRowsLimit, c.MaxRows)
	}
	if c.HeaderFrom != "" {
		if _, err := loadLayout(c.HeaderFrom); err != nil {
			v.Errorf("header_from", "%v", err)
		}
	}
}

// Open makes the sink. It re-reads header_from, which may have changed
// since Validate, and creates nothing: the outbox is created by Apply.
func (c *Config) Open(env connector.Env) (connector.Sink, error) {
	return c.open(env)
}

func (c *Config) open(env connector.Env) (*Sink, error) {
	if strings.TrimSpace(c.Dir) == "" {
		return nil, errors.New("csvfile: dir must be set")
	}
	maxRows := c.MaxRows
	if maxRows == 0 {
		maxRows = MaxRowsLimit
	}
	if maxRows < 1 || maxRows > MaxRowsLimit {
		return nil, fmt.Errorf("csvfile: max_rows must be between 1 and %d, got %d", MaxRowsLimit, maxRows)
	}
	lay := defaultLayout()
	if c.HeaderFrom != "" {
		var err error
		if lay, err = loadLayout(c.HeaderFrom); err != nil {
			return nil, err
		}
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if missing := lay.missingFields(); len(missing) > 0 {
		// Not an error: a trimmed template is the operator's choice, but the
		// data of those fields never reaches Control Hub, which must be said.
		log.Warn("csvfile: header_from lacks contact fields; their values are not written",
			"header_from", c.HeaderFrom, "fields", strings.Join(missing, ", "))
	}
	if !lay.hasUUID() {
		log.Warn("csvfile: header_from has no Contact UUID column; only creates can be written, a run with updates fails",
			"header_from", c.HeaderFrom)
	}
	return &Sink{
		dir:     c.Dir,
		maxRows: maxRows,
		bom:     c.BOM,
		layout:  lay,
		job:     env.Job,
		log:     log,
		src:     c.HeaderFrom,
	}, nil
}

// column kinds of an import file header.
const (
	colUnknown = -1 // written empty
	colUUID    = -2
)

// layout is the header of the import files and, for each column, the
// contact field it carries.
type layout struct {
	header []string
	cols   []int // connector.Field, colUUID or colUnknown
}

func defaultLayout() *layout {
	h := connector.TemplateHeader()
	l, err := newLayout(h)
	if err != nil {
		panic("csvfile: template header: " + err.Error()) // connector's own header: a programming error
	}
	return l
}

// newLayout maps a header row onto contact fields. A known column named twice
// is refused: the import would carry the value twice, and Control Hub's
// reading of such a file is undocumented.
func newLayout(header []string) (*layout, error) {
	l := &layout{header: header, cols: make([]int, len(header))}
	seen := make(map[int]int, len(header))
	for i, name := range header {
		col := colUnknown
		if f, ok := connector.FieldByColumn(name); ok {
			col = int(f)
		} else if isUUIDColumn(name) {
			col = colUUID
		}
		if col != colUnknown {
			if j, dup := seen[col]; dup {
				return nil, fmt.Errorf("columns %d and %d are both %q", j+1, i+1, strings.TrimSpace(name))
			}
			seen[col] = i
		}
		l.cols[i] = col
	}
	if _, ok := seen[int(connector.DisplayName)]; !ok {
		return nil, fmt.Errorf("header has no %q column", connector.DisplayName.Column())
	}
	return l, nil
}

func isUUIDColumn(name string) bool {
	return strings.EqualFold(strings.TrimSpace(name), connector.UUIDColumn)
}

func (l *layout) hasUUID() bool {
	for _, c := range l.cols {
		if c == colUUID {
			return true
		}
	}
	return false
}

// missingFields names the contact fields that no column carries.
func (l *layout) missingFields() []string {
	var have [connector.NumFields]bool
	for _, c := range l.cols {
		if c >= 0 {
			have[c] = true
		}
	}
	var out []string
	for f := connector.Field(0); f < connector.NumFields; f++ {
		if !have[f] {
			out = append(out, f.Column())
		}
	}
	return out
}

// loadLayout reads the header row of a Control Hub template or export.
func loadLayout(path string) (*layout, error) {
	header, err := readHeaderFile(path)
	if err != nil {
		return nil, err
	}
	l, err := newLayout(header)
	if err != nil {
		return nil, fmt.Errorf("csvfile: header_from %q line 1: %w", path, err)
	}
	return l, nil
}
