package connector

import (
	"context"
	"fmt"
)

// Recover marks runs left "running" by a process that died as failed, and
// removes the output files they may have left.
func (e *Engine) Recover(ctx context.Context, jobs []*Job) error {
	// The output goes first: a process killed after marking a run failed
	// but before removing its files would leave files that no running run
	// owns, and nothing would ever remove them. A job's interrupted run is
	// its newest: every session recovers before it starts a run.
	for _, j := range jobs {
		if _, ok := j.Sink.(OutputRemover); !ok {
			continue
		}
		last, err := e.Store.Runs(ctx, j.Name, 1)
		if err != nil {
			return fmt.Errorf("recover job %s: %w", j.Name, err)
		}
		if len(last) == 1 && last[0].Status == StatusRunning {
			if err := e.removeOutput(j, last[0].ID); err != nil {
				return err
			}
		}
	}
	runs, err := e.Store.RecoverInterrupted(ctx, "interrupted: the process stopped before the run was committed")
	if err != nil {
		return err
	}
	for _, r := range runs {
		e.logger().Warn("run was interrupted; recorded as failed", "job", r.Job, "run", r.ID)
		for _, j := range jobs {
			if j.Name == r.Job {
				if err := e.removeOutput(j, r.ID); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// removeOutput removes what an interrupted run of job j wrote, if its sink
// writes anything that can be removed. Removing twice is harmless.
func (e *Engine) removeOutput(j *Job, run int64) error {
	rm, ok := j.Sink.(OutputRemover)
	if !ok {
		return nil
	}
	files, err := rm.RemoveOutput(j.Name, run)
	if err != nil {
		return fmt.Errorf("recover run %d: %w", run, err)
	}
	for _, f := range files {
		e.logger().Warn("removed output of an interrupted run", "job", j.Name, "run", run, "file", f)
	}
	return nil
}
