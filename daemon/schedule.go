package daemon

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser accepts what the product contract promises in `schedule` and
// `full_schedule`: 5-field cron, descriptors (@daily, @every 15m) and a
// CRON_TZ= (or TZ=) prefix.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a job's schedule. The config loader calls it to
// validate `schedule` and `full_schedule`, so that a schedule the daemon
// would refuse is reported with its YAML path before the daemon starts.
func ParseSchedule(spec string) (s cron.Schedule, err error) {
	if spec == "" {
		return nil, fmt.Errorf("empty schedule")
	}
	// robfig/cron v3.0.1 slices out of range on a time zone prefix with
	// nothing after it ("CRON_TZ=", "TZ=UTC"): a configuration must never
	// crash the loader.
	if (strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=")) && !strings.Contains(spec, " ") {
		return nil, fmt.Errorf("schedule %q: a time zone prefix must be followed by a space and a schedule", spec)
	}
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("schedule %q: cannot be parsed (%v)", spec, p)
		}
	}()
	s, err = parser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", spec, err)
	}
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		// robfig returns zero for a spec that never fires (30 February).
		return nil, fmt.Errorf("schedule %q never fires", spec)
	}
	return s, nil
}

// lateAfter is when a job that last succeeded (or was first scheduled) at
// ref becomes late: twice its schedule's interval after ref, but never
// before its second firing after ref, so that a weekdays-only job that
// succeeded on Friday is not late on Sunday.
func lateAfter(s cron.Schedule, ref time.Time) time.Time {
	n1 := s.Next(ref)
	n2 := s.Next(n1)
	if n1.IsZero() || n2.IsZero() {
		return time.Time{}
	}
	late := ref.Add(2 * n2.Sub(n1))
	if n2.After(late) {
		late = n2
	}
	return late
}
