package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/sinks/csvfile"
)

// Version is set at build time with -ldflags "-X github.com/contactsync/contactsync/cli.Version=v1.2.3".
var Version = "dev"

func runVersion(_ context.Context, c *cmdCtx) int {
	rev, when, dirty := "", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (modified)"
				}
			}
		}
	}
	fmt.Fprintf(c.io.Stdout, "contactsync %s\n", Version)
	if rev != "" {
		fmt.Fprintf(c.io.Stdout, "  commit   %s%s %s\n", rev, dirty, when)
	}
	fmt.Fprintf(c.io.Stdout, "  go       %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return ExitOK
}

func runReconcile(ctx context.Context, c *cmdCtx) int {
	fs := c.flags()
	var job string
	fs.StringVar(&job, "job", "", "job whose contacts the export's UUIDs are bound to")
	if !c.parse() {
		return ExitUsage
	}
	if job == "" || len(c.args) != 1 {
		return c.usageErr("--job NAME and one EXPORT.csv are required")
	}
	export := c.args[0]
	se, code := c.open(ctx, false, true)
	if se == nil {
		return code
	}
	defer se.close()
	cfg, log, db := se.cfg, se.log, se.db
	jobs, err := cfg.Build([]string{job}, log, db)
	if err != nil {
		return c.usageErr("%v", err)
	}
	defer closeJobs(jobs)
	eng := &connector.Engine{Store: db, Logger: log}
	if err := eng.Recover(ctx, jobs); err != nil {
		return c.fail(err)
	}
	rows := func(fn func(connector.ExportRow) error) error {
		return csvfile.ReadExport(export, func(r csvfile.ExportRow) error {
			return fn(connector.ExportRow{UUID: r.UUID, Contact: r.Contact, Origin: export + ":" + strconv.Itoa(r.Line)})
		})
	}
	res, err := eng.Reconcile(ctx, jobs[0], rows)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.io.Stdout, "job %s  run %d  reconciled %s\n", job, res.Run.ID, export)
	t := newTable(c.io.Stdout, "  ")
	t.row("bound", strconv.Itoa(res.Bound), "pending creates that got their Contact UUID")
	t.row("adopted", strconv.Itoa(res.Adopted), "existing contacts matched to a source record (updated from now on)")
	t.row("known", strconv.Itoa(res.Known), "rows already bound to this job")
	t.row("unmatched", strconv.Itoa(res.Unmatched), "rows that match no source record: never modified or deleted")
	if res.Ambiguous > 0 {
		t.row("ambiguous", strconv.Itoa(res.Ambiguous), "match keys shared by several rows: not used")
	}
	t.flush()
	return ExitOK
}

func runPreview(ctx context.Context, c *cmdCtx) int {
	fs := c.flags()
	var job string
	var limit int
	fs.StringVar(&job, "job", "", "job to preview")
	fs.IntVar(&limit, "limit", 5, "how many source records")
	if !c.parse() {
		return ExitUsage
	}
	if job == "" || len(c.args) > 0 {
		return c.usageErr("--job NAME is required")
	}
	if limit < 1 {
		return c.usageErr("--limit must be 1 or more")
	}
	cfg, code := c.load()
	if cfg == nil {
		return code
	}
	log := c.logger(cfg, false)
	// Preview records nothing: it needs no state.
	jobs, err := cfg.Build([]string{job}, log, nil)
	if err != nil {
		return c.usageErr("%v", err)
	}
	defer closeJobs(jobs)
	eng := &connector.Engine{Logger: log}
	items, err := eng.Preview(ctx, jobs[0], limit)
	for i, it := range items {
		fmt.Fprintf(c.io.Stdout, "record %d  key %q  (%s)\n", i+1, it.Key, it.Origin)
		t := newTable(c.io.Stdout, "    ")
		var names []string
		for n := range it.Record {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			t.row(n, strconv.Quote(it.Record[n]))
		}
		t.flush()
		if it.Reason != "" {
			fmt.Fprintf(c.io.Stdout, "  -> rejected: %s\n\n", it.Reason)
			continue
		}
		fmt.Fprintln(c.io.Stdout, "  -> Webex contact:")
		t = newTable(c.io.Stdout, "    ")
		for f := connector.Field(0); f < connector.NumFields; f++ {
			if it.Contact[f] != "" {
				t.row(f.Column(), strconv.Quote(it.Contact[f]))
			}
		}
		t.flush()
		fmt.Fprintln(c.io.Stdout)
	}
	if err != nil {
		return c.fail(err)
	}
	if len(items) == 0 {
		fmt.Fprintln(c.io.Stdout, "the source holds no record")
	}
	return ExitOK
}

func runCheck(ctx context.Context, c *cmdCtx) int {
	c.flags()
	if !c.parseNone() {
		return ExitUsage
	}
	cfg, code := c.load()
	if cfg == nil {
		return code
	}
	fmt.Fprintf(c.io.Stdout, "config  ok    %s (%d jobs)\n", cfg.Path(), len(cfg.Jobs))
	log := c.logger(cfg, false)
	exit := ExitOK
	line := func(what string, err error, detail string) {
		status := "ok"
		if err != nil {
			status, detail, exit = "FAIL", err.Error(), ExitFailed
		}
		fmt.Fprintf(c.io.Stdout, "%-7s %-5s %s\n", what, status, detail)
	}
	// The state lets sources say what the next run would read.
	var store connector.Store
	db, closeDB, err := c.openState(ctx, cfg, log, false)
	line("state", err, cfg.State)
	if err == nil {
		defer closeDB()
		store = db
	}
	for _, name := range cfg.JobNames() {
		jobs, err := cfg.Build([]string{name}, log, store)
		if err != nil {
			line("job", err, name)
			continue
		}
		j := jobs[0]
		for _, part := range []struct {
			what string
			p    any
		}{{"source", j.Source}, {"sink", j.Sink}} {
			ch, ok := part.p.(connector.Checker)
			if !ok {
				line(part.what, nil, name+": nothing to check")
				continue
			}
			detail, err := ch.Check(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
			line(part.what, err, name+": "+detail)
		}
		closeJobs(jobs)
	}
	return exit
}
