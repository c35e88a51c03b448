package connector

import (
	"context"
	"fmt"
)

// PreviewItem is one source record next to the contact it maps to.
type PreviewItem struct {
	Key     string            `json:"key"`
	Origin  string            `json:"origin"`
	Record  map[string]string `json:"record"`
	Contact *Contact          `json:"-"`
	Reason  string            `json:"rejected,omitempty"`
}

// Preview pulls up to limit records without consuming anything and maps
// them, for designing mappings. It records nothing.
func (e *Engine) Preview(ctx context.Context, job *Job, limit int) ([]PreviewItem, error) {
	var items []PreviewItem
	em := &funcEmitter{
		record: func(rec *Record) error {
			it := PreviewItem{Key: rec.Key, Origin: rec.Origin, Record: map[string]string{}}
			for i, n := range rec.Names {
				if i < len(rec.Values) {
					it.Record[n] = rec.Values[i]
				}
			}
			var c Contact
			if err := job.Mapping.Apply(rec, &c); err != nil {
				it.Reason = err.Error()
			} else {
				it.Contact = &c
			}
			items = append(items, it)
			return nil
		},
		reject: func(key, origin, reason string) error {
			items = append(items, PreviewItem{Key: key, Origin: origin, Reason: reason})
			return nil
		},
	}
	// Every attribute: the operator wants to see what the source holds.
	if _, err := job.Source.Pull(ctx, PullRequest{Peek: true, Full: true, AllAttributes: true, Limit: limit}, em); err != nil {
		return items, fmt.Errorf("job %s: source: %w", job.Name, err)
	}
	if limit > 0 && len(items) > limit {
		items = items[:limit]
	}
	return items, nil
}
