package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/contactsync/contactsync/connector"
)

func runSync(ctx context.Context, c *cmdCtx) int {
	fs := c.flags()
	var jobs multi
	var o connector.RunOptions
	var asJSON bool
	fs.Var(&jobs, "job", "job to run (repeatable; default: all)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "print the plan; emit nothing, change no state")
	fs.BoolVar(&o.Full, "full", false, "full pull: ignore the source's incremental cursor")
	fs.BoolVar(&o.AllowDeletes, "allow-deletes", false, "let this run exceed the deletion guard")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if !c.parseNone() {
		return ExitUsage
	}
	return c.syncJobs(ctx, jobs, o, asJSON)
}

func runPlan(ctx context.Context, c *cmdCtx) int {
	fs := c.flags()
	var jobs multi
	var asJSON bool
	fs.Var(&jobs, "job", "job to plan (repeatable; default: all)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if !c.parseNone() {
		return ExitUsage
	}
	return c.syncJobs(ctx, jobs, connector.RunOptions{DryRun: true}, asJSON)
}

// jobReport is one job's outcome in sync/plan output.
type jobReport struct {
	Run      connector.Run         `json:"run"`
	Error    string                `json:"error,omitempty"`
	Changes  []jsonChange          `json:"changes,omitempty"`
	Rejected []connector.Rejection `json:"rejected"`
}

type jsonChange struct {
	Key         string               `json:"key"`
	Action      connector.Action     `json:"action"`
	UUID        string               `json:"contact_uuid"`
	DisplayName string               `json:"display_name"`
	Fields      map[string][2]string `json:"fields"`
	Held        string               `json:"held,omitempty"`
}

func (c *cmdCtx) syncJobs(ctx context.Context, names []string, o connector.RunOptions, asJSON bool) int {
	o.Trigger = "cli"
	o.Collect = o.DryRun
	// A plan takes no lock so it can run beside the daemon; it changes
	// nothing but its own audit row.
	se, code := c.open(ctx, false, !o.DryRun)
	if se == nil {
		return code
	}
	defer se.close()
	cfg, log, db := se.cfg, se.log, se.db
	jobs, err := cfg.Build(names, log, db)
	if err != nil {
		if strings.Contains(err.Error(), "no job named") {
			fmt.Fprintf(c.io.Stderr, "contactsync %s: %v\n", c.name, err)
			return ExitUsage
		}
		return c.fail(err)
	}
	defer closeJobs(jobs)
	eng := &connector.Engine{Store: db, Logger: log}
	if !o.DryRun {
		if err := eng.Recover(ctx, jobs); err != nil {
			return c.fail(err)
		}
	}
	var reports []jobReport
	exit := ExitOK
	for _, j := range jobs {
		res, err := eng.Run(ctx, j, o)
		rep := jobReport{Run: res.Run, Rejected: res.Rejected, Changes: toJSONChanges(res.Changes)}
		if rep.Rejected == nil {
			rep.Rejected = []connector.Rejection{}
		}
		switch {
		case errors.Is(err, connector.ErrBlocked):
			exit = worse(exit, ExitBlocked)
		case err != nil:
			rep.Error = err.Error()
			exit = worse(exit, ExitFailed)
		case res.Run.Rejected > 0:
			exit = worse(exit, ExitRejected)
		}
		reports = append(reports, rep)
		if !asJSON {
			printReport(c.io.Stdout, &rep, res, o.DryRun)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if asJSON {
		enc := json.NewEncoder(c.io.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return c.fail(err)
		}
	}
	return exit
}

// worse keeps the exit status that matters most: a failure, then a block,
// then rejections.
func worse(a, b int) int {
	rank := map[int]int{ExitOK: 0, ExitRejected: 1, ExitBlocked: 2, ExitFailed: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func closeJobs(jobs []*connector.Job) {
	for _, j := range jobs {
		for _, p := range []any{j.Source, j.Sink} {
			if cl, ok := p.(connector.Closer); ok {
				_ = cl.Close()
			}
		}
	}
}

func toJSONChanges(in []connector.PlannedChange) []jsonChange {
	var out []jsonChange
	for _, pc := range in {
		jc := jsonChange{Key: pc.Key, Action: pc.Action, UUID: pc.UUID, DisplayName: pc.DisplayName, Fields: map[string][2]string{}, Held: pc.Held}
		for _, f := range pc.Fields {
			jc.Fields[f.Field.String()] = [2]string{f.Old, f.New}
		}
		out = append(out, jc)
	}
	return out
}

func printReport(w io.Writer, rep *jobReport, res *connector.Result, dry bool) {
	r := rep.Run
	dur := r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond)
	fmt.Fprintf(w, "job %s  run %d  %s  %s\n", r.Job, r.ID, r.Status, dur)
	if r.Source != "" {
		fmt.Fprintf(w, "  source     %s\n", r.Source)
	}
	verb := ""
	if dry {
		verb = "would be "
	}
	fmt.Fprintf(w, "  %screated %d, updated %d, deleted %d; unchanged %d, rejected %d, waiting %d, adopted %d (%d source records)\n",
		verb, r.Created, r.Updated, r.Deleted, r.Unchanged, r.Rejected, r.Waiting, r.Adopted, r.Counts.Source)
	if r.Reason != "" {
		label := "reason"
		if r.Status == connector.StatusBlocked {
			label = "blocked"
		}
		fmt.Fprintf(w, "  %-10s %s\n", label, r.Reason)
	}
	if r.Status == connector.StatusBlocked {
		fmt.Fprintf(w, "  nothing was emitted; fix the source, or run `contactsync approve --job %s` to let the next run through\n", r.Job)
	}
	if rep.Error != "" && r.Reason == "" {
		fmt.Fprintf(w, "  error      %s\n", rep.Error)
	}
	for _, f := range r.Files {
		fmt.Fprintf(w, "  wrote      %s\n", f)
	}
	if dry {
		printChanges(w, res.Changes)
	}
	if len(res.Rejected) > 0 {
		fmt.Fprintf(w, "  rejected records:\n")
		tw := newTable(w, "    ")
		for _, rj := range res.Rejected {
			tw.row(rj.Key, rj.Origin, rj.Reason)
		}
		tw.flush()
		if r.Rejected > len(res.Rejected) {
			fmt.Fprintf(w, "    ... and %d more (contactsync show %d)\n", r.Rejected-len(res.Rejected), r.ID)
		}
	}
}

var actionSigns = map[connector.Action]string{
	connector.ActionCreate: "+ create",
	connector.ActionUpdate: "~ update",
	connector.ActionDelete: "- delete",
	connector.ActionBind:   "= adopt",
}

func printChanges(w io.Writer, changes []connector.PlannedChange) {
	for _, pc := range changes {
		line := fmt.Sprintf("  %s  %s  %q", actionSigns[pc.Action], pc.Key, pc.DisplayName)
		if pc.UUID != "" {
			line += "  " + pc.UUID
		}
		if pc.Held != "" {
			line += "  (" + pc.Held + ")"
		}
		fmt.Fprintln(w, line)
		for _, f := range pc.Fields {
			if pc.Action == connector.ActionCreate {
				fmt.Fprintf(w, "        %-16s %q\n", f.Field, f.New)
				continue
			}
			fmt.Fprintf(w, "        %-16s %q -> %q\n", f.Field, f.Old, f.New)
		}
	}
}
