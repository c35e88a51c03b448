package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/contactsync/contactsync/connector"
)

func runApprove(ctx context.Context, c *cmdCtx) int {
	fs := c.flags()
	var job string
	fs.StringVar(&job, "job", "", "job whose next run may exceed its deletion guard once")
	if !c.parse() {
		return ExitUsage
	}
	if job == "" || len(c.args) > 0 {
		return c.usageErr("--job NAME is required, and nothing else")
	}
	// No lock: approving is how an operator unblocks the running daemon.
	se, code := c.open(ctx, false, false)
	if se == nil {
		return code
	}
	defer se.close()
	if _, ok := se.cfg.Job(job); !ok {
		return c.usageErr("no job named %q", job)
	}
	db := se.db
	by := "unknown"
	if u, err := user.Current(); err == nil {
		by = u.Username
	}
	if err := db.Approve(ctx, job, by); err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.io.Stdout, "approved: the next run of job %s may exceed its deletion guard once (approved by %s)\n", job, by)
	return ExitOK
}

func runHistory(ctx context.Context, c *cmdCtx) int {
	fs := c.flags()
	var job string
	var limit int
	var asJSON bool
	fs.StringVar(&job, "job", "", "only this job")
	fs.IntVar(&limit, "limit", 20, "at most this many runs")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if !c.parseNone() {
		return ExitUsage
	}
	if limit < 1 {
		return c.usageErr("--limit must be 1 or more")
	}
	se, code := c.open(ctx, false, false)
	if se == nil {
		return code
	}
	defer se.close()
	db := se.db
	runs, err := db.Runs(ctx, job, limit)
	if err != nil {
		return c.fail(err)
	}
	if asJSON {
		if runs == nil {
			runs = []connector.Run{}
		}
		return c.printJSON(runs)
	}
	if len(runs) == 0 {
		fmt.Fprintln(c.io.Stdout, "no runs recorded yet")
		return ExitOK
	}
	t := newTable(c.io.Stdout, "")
	t.row("ID", "JOB", "KIND", "STARTED", "DURATION", "STATUS", "CREATED", "UPDATED", "DELETED", "UNCHANGED", "REJECTED", "REASON")
	for _, r := range runs {
		dur := "-"
		if !r.FinishedAt.IsZero() {
			dur = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
		}
		t.row(strconv.FormatInt(r.ID, 10), r.Job, r.Kind, r.StartedAt.Local().Format("2006-01-02 15:04:05"), dur, r.Status,
			itoa(r.Created), itoa(r.Updated), itoa(r.Deleted), itoa(r.Unchanged), itoa(r.Rejected), truncate(r.Reason, 60))
	}
	t.flush()
	return ExitOK
}

func runShow(ctx context.Context, c *cmdCtx) int {
	fs := c.flags()
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if !c.parse() {
		return ExitUsage
	}
	if len(c.args) != 1 {
		return c.usageErr("one RUN_ID is needed")
	}
	id, err := strconv.ParseInt(c.args[0], 10, 64)
	if err != nil || id < 1 {
		return c.usageErr("RUN_ID must be a run number, not %q", c.args[0])
	}
	se, code := c.open(ctx, false, false)
	if se == nil {
		return code
	}
	defer se.close()
	db := se.db
	run, changes, rejected, err := db.RunDetail(ctx, id)
	if err != nil {
		return c.fail(err)
	}
	if asJSON {
		return c.printJSON(showJSON(run, changes, rejected))
	}
	printRun(c.io.Stdout, run, changes, rejected)
	return ExitOK
}

type showDoc struct {
	Run      connector.Run         `json:"run"`
	Changes  []jsonChange          `json:"changes"`
	Bindings []jsonChange          `json:"bindings,omitempty"`
	Rejected []connector.Rejection `json:"rejected"`
}

func showJSON(run connector.Run, changes []connector.ChangeRecord, rejected []connector.Rejection) showDoc {
	doc := showDoc{Run: run, Changes: []jsonChange{}, Rejected: rejected}
	if doc.Rejected == nil {
		doc.Rejected = []connector.Rejection{}
	}
	for i := range changes {
		cr := &changes[i]
		jc := jsonChange{Key: cr.Key, Action: cr.Action, UUID: cr.UUID, DisplayName: displayName(cr), Fields: map[string][2]string{}}
		if !cr.Applied {
			jc.Held = cr.Reason
			if jc.Held == "" {
				jc.Held = "not applied"
			}
		}
		for _, f := range fieldChanges(cr) {
			jc.Fields[f.Field.String()] = [2]string{f.Old, f.New}
		}
		if cr.Action == connector.ActionBind {
			doc.Bindings = append(doc.Bindings, jc)
			continue
		}
		doc.Changes = append(doc.Changes, jc)
	}
	return doc
}

func displayName(cr *connector.ChangeRecord) string {
	if cr.New != nil && cr.New[connector.DisplayName] != "" {
		return cr.New[connector.DisplayName]
	}
	if cr.Old != nil {
		return cr.Old[connector.DisplayName]
	}
	return ""
}

// fieldChanges lists what a change did field by field: every set field of a
// create, every field of a deleted contact, the differing fields of an update.
func fieldChanges(cr *connector.ChangeRecord) []connector.FieldChange {
	var empty connector.Contact
	old, new := cr.Old, cr.New
	if old == nil {
		old = &empty
	}
	if new == nil {
		if cr.Action != connector.ActionDelete {
			return nil
		}
		new = &empty
	}
	var out []connector.FieldChange
	for _, f := range connector.Diff(old, new) {
		out = append(out, connector.FieldChange{Field: f, Old: old[f], New: new[f]})
	}
	return out
}

func printRun(w io.Writer, r connector.Run, changes []connector.ChangeRecord, rejected []connector.Rejection) {
	t := newTable(w, "")
	t.row("run", strconv.FormatInt(r.ID, 10))
	t.row("job", r.Job)
	t.row("kind", r.Kind)
	t.row("status", r.Status)
	t.row("started", r.StartedAt.Local().Format(time.RFC3339))
	if !r.FinishedAt.IsZero() {
		t.row("finished", r.FinishedAt.Local().Format(time.RFC3339)+"  ("+r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()+")")
	}
	if r.Trigger != "" {
		t.row("trigger", r.Trigger)
	}
	if r.Source != "" {
		t.row("source", r.Source)
	}
	if r.ConfigHash != "" {
		t.row("config", r.ConfigHash)
	}
	t.row("figures", fmt.Sprintf("created %d, updated %d, deleted %d, unchanged %d, rejected %d, waiting %d, adopted %d, source records %d",
		r.Created, r.Updated, r.Deleted, r.Unchanged, r.Rejected, r.Waiting, r.Adopted, r.Counts.Source))
	if r.Reason != "" {
		t.row("reason", r.Reason)
	}
	for _, f := range r.Files {
		t.row("file", f)
	}
	t.flush()
	if len(changes) > 0 {
		fmt.Fprintf(w, "\nchanges (%d):\n", len(changes))
	}
	for i := range changes {
		cr := &changes[i]
		sign := actionSigns[cr.Action]
		if cr.Action == connector.ActionBind {
			sign = "= bind"
		}
		line := fmt.Sprintf("  %s  %s  %q", sign, cr.Key, displayName(cr))
		if cr.UUID != "" {
			line += "  " + cr.UUID
		}
		if !cr.Applied {
			line += "  (not applied"
			if cr.Reason != "" {
				line += ": " + cr.Reason
			}
			line += ")"
		} else if cr.Reason != "" {
			line += "  (" + cr.Reason + ")"
		}
		fmt.Fprintln(w, line)
		if cr.Action == connector.ActionDelete {
			continue
		}
		for _, f := range fieldChanges(cr) {
			if cr.Old == nil {
				fmt.Fprintf(w, "        %-16s %q\n", f.Field, f.New)
			} else {
				fmt.Fprintf(w, "        %-16s %q -> %q\n", f.Field, f.Old, f.New)
			}
		}
	}
	if len(rejected) > 0 {
		fmt.Fprintf(w, "\nrejected records (%d):\n", len(rejected))
		tw := newTable(w, "  ")
		for _, rj := range rejected {
			tw.row(rj.Key, rj.Origin, rj.Reason)
		}
		tw.flush()
	}
}

func (c *cmdCtx) printJSON(v any) int {
	enc := json.NewEncoder(c.io.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail(err)
	}
	return ExitOK
}

// table aligns columns for people.
type table struct {
	tw     *tabwriter.Writer
	indent string
}

func newTable(w io.Writer, indent string) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0), indent: indent}
}

func (t *table) row(cols ...string) {
	for i, c := range cols {
		cols[i] = strings.ReplaceAll(strings.ReplaceAll(c, "\t", " "), "\n", " ")
	}
	fmt.Fprintln(t.tw, t.indent+strings.Join(cols, "\t"))
}

func (t *table) flush() { _ = t.tw.Flush() }

func itoa(n int) string { return strconv.Itoa(n) }

func truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
