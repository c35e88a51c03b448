package connector

import (
	"fmt"
	"strings"
)

// SafetyConfig is a job's `safety:` block.
//
//	safety:
//	  max_deletes: 500          # per run
//	  max_delete_percent: 10    # of the job's managed contacts
//	  min_source_records: 1     # fewer records from a complete pull: blocked, never a mass delete
//	  allow: [create, update, delete]
type SafetyConfig struct {
	MaxDeletes       *int     `yaml:"max_deletes"`
	MaxDeletePercent *float64 `yaml:"max_delete_percent"`
	MinSourceRecords *int     `yaml:"min_source_records"`
	Allow            []string `yaml:"allow"`
}

// Safety is a job's guards with defaults applied.
type Safety struct {
	MaxDeletes       int
	MaxDeletePercent float64
	MinSourceRecords int
	Allow            map[Action]bool
}

// Defaults of the deletion guard: Entra Connect's export threshold (500)
// and a share small enough that a truncated export cannot pass.
const (
	DefaultMaxDeletes       = 500
	DefaultMaxDeletePercent = 10
	DefaultMinSourceRecords = 1
)

// Validate reports every problem under v.
func (c *SafetyConfig) Validate(v *Validator) {
	if c.MaxDeletes != nil && *c.MaxDeletes < 0 {
		v.Errorf("max_deletes", "must be 0 or more, not %d", *c.MaxDeletes)
	}
	if c.MaxDeletePercent != nil && (*c.MaxDeletePercent < 0 || *c.MaxDeletePercent > 100) {
		v.Errorf("max_delete_percent", "must be between 0 and 100, not %g", *c.MaxDeletePercent)
	}
	if c.MinSourceRecords != nil && *c.MinSourceRecords < 0 {
		v.Errorf("min_source_records", "must be 0 or more, not %d", *c.MinSourceRecords)
	}
	seen := map[string]bool{}
	for i, a := range c.Allow {
		switch Action(a) {
		case ActionCreate, ActionUpdate, ActionDelete:
		default:
			v.At("allow").Index(i).Errorf("", "unknown operation %q (want create, update or delete)", a)
		}
		if seen[a] {
			v.At("allow").Index(i).Errorf("", "%q listed twice", a)
		}
		seen[a] = true
	}
}

// Safety applies the defaults.
func (c *SafetyConfig) Safety() Safety {
	s := Safety{
		MaxDeletes:       DefaultMaxDeletes,
		MaxDeletePercent: DefaultMaxDeletePercent,
		MinSourceRecords: DefaultMinSourceRecords,
		Allow:            map[Action]bool{ActionCreate: true, ActionUpdate: true, ActionDelete: true},
	}
	if c.MaxDeletes != nil {
		s.MaxDeletes = *c.MaxDeletes
	}
	if c.MaxDeletePercent != nil {
		s.MaxDeletePercent = *c.MaxDeletePercent
	}
	if c.MinSourceRecords != nil {
		s.MinSourceRecords = *c.MinSourceRecords
	}
	if c.Allow != nil {
		s.Allow = map[Action]bool{}
		for _, a := range c.Allow {
			s.Allow[Action(a)] = true
		}
	}
	return s
}

// guard returns why a plan must be blocked, or "" when it may go on.
// managed is the number of contacts the job manages before the run.
func (s Safety) guard(deletes, managed, sourceRecords int, complete bool) string {
	var why []string
	if complete && sourceRecords < s.MinSourceRecords {
		why = append(why, fmt.Sprintf("the source yielded %d records, fewer than min_source_records %d", sourceRecords, s.MinSourceRecords))
	}
	if deletes > s.MaxDeletes {
		why = append(why, fmt.Sprintf("%d deletes exceed max_deletes %d", deletes, s.MaxDeletes))
	}
	if managed > 0 && float64(deletes)*100 > s.MaxDeletePercent*float64(managed) {
		why = append(why, fmt.Sprintf("%d deletes are %.1f%% of %d managed contacts, over max_delete_percent %g",
			deletes, float64(deletes)*100/float64(managed), managed, s.MaxDeletePercent))
	}
	return strings.Join(why, "; ")
}
