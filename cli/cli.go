// Package cli implements contactsync's subcommands: it parses their flags,
// runs them against the packages that do the work, prints what a person or
// a script reads, and chooses the exit status the product contract names.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/contactsync/contactsync/config"
	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/state"
)

// Exit statuses (product contract).
const (
	ExitOK       = 0 // every job succeeded
	ExitFailed   = 1 // a job failed
	ExitUsage    = 2 // bad usage or an invalid configuration
	ExitBlocked  = 3 // a job was blocked by a safety guard
	ExitRejected = 4 // all jobs completed but some source records were rejected
)

// IO is what a command reads and writes.
type IO struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Reload receives a value on SIGHUP (contactsync run); may be nil.
	Reload <-chan struct{}
	// Env overrides os.Getenv in tests; nil reads the process environment.
	Env func(string) string
}

type command struct {
	name  string
	usage string
	run   func(ctx context.Context, c *cmdCtx) int
}

var commands = []command{
	{"run", "run [-c FILE]", runDaemon},
	{"sync", "sync [-c FILE] [--job NAME]... [--dry-run] [--full] [--allow-deletes] [--json]", runSync},
	{"plan", "plan [-c FILE] [--job NAME]... [--json]", runPlan},
	{"reconcile", "reconcile [-c FILE] --job NAME EXPORT.csv", runReconcile},
	{"approve", "approve [-c FILE] --job NAME", runApprove},
	{"history", "history [-c FILE] [--job NAME] [--limit N] [--json]", runHistory},
	{"show", "show [-c FILE] RUN_ID [--json]", runShow},
	{"preview", "preview [-c FILE] --job NAME [--limit N]", runPreview},
	{"check", "check [-c FILE]", runCheck},
	{"version", "version", runVersion},
}

// Main runs the command in io.Args and returns the exit status.
func Main(ctx context.Context, io IO) int {
	if len(io.Args) == 0 || io.Args[0] == "-h" || io.Args[0] == "--help" || io.Args[0] == "help" {
		usage(io.Stderr)
		if len(io.Args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range commands {
		if c.name == io.Args[0] {
			cc := &cmdCtx{io: io, name: c.name, usage: c.usage}
			return c.run(ctx, cc)
		}
	}
	fmt.Fprintf(io.Stderr, "contactsync: unknown command %q\n", io.Args[0])
	usage(io.Stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: contactsync COMMAND [flags]")
	for _, c := range commands {
		fmt.Fprintln(w, "  contactsync "+c.usage)
	}
}

// cmdCtx carries one command's flags and what it opened.
type cmdCtx struct {
	io      IO
	name    string
	usage   string
	fs      *flag.FlagSet
	cfgPath string
	verbose bool
	args    []string
}

func (c *cmdCtx) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("contactsync "+c.name, flag.ContinueOnError)
	fs.SetOutput(c.io.Stderr)
	def := config.DefaultPath
	fs.StringVar(&c.cfgPath, "c", def, "configuration file")
	fs.StringVar(&c.cfgPath, "config", def, "configuration file")
	fs.BoolVar(&c.verbose, "v", false, "log at the configured level (one-shot commands log warnings only by default)")
	fs.BoolVar(&c.verbose, "verbose", false, "same as -v")
	fs.Usage = func() {
		fmt.Fprintln(c.io.Stderr, "usage: contactsync "+c.usage)
		fs.PrintDefaults()
	}
	c.fs = fs
	return fs
}

// parse parses flags that may stand before or after positional arguments.
func (c *cmdCtx) parse() bool {
	args := c.io.Args[1:]
	for {
		if err := c.fs.Parse(args); err != nil {
			return false
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			return true
		}
		c.args = append(c.args, rest[0])
		args = rest[1:]
	}
}

// parseNone parses the flags of a command that takes no argument and says
// why when the command line is wrong.
func (c *cmdCtx) parseNone() bool {
	if !c.parse() {
		return false
	}
	if len(c.args) > 0 {
		c.usageErr("unexpected argument %q", c.args[0])
		return false
	}
	return true
}

func (c *cmdCtx) usageErr(format string, args ...any) int {
	fmt.Fprintf(c.io.Stderr, "contactsync %s: %s\n", c.name, fmt.Sprintf(format, args...))
	fmt.Fprintln(c.io.Stderr, "usage: contactsync "+c.usage)
	return ExitUsage
}

// load reads the configuration; an invalid one lists every problem.
func (c *cmdCtx) load() (*config.Config, int) {
	cfg, err := config.Load(c.cfgPath)
	if err != nil {
		var ps connector.Problems
		if errors.As(err, &ps) {
			fmt.Fprintf(c.io.Stderr, "contactsync: %s: invalid configuration (%d problems):\n", c.cfgPath, len(ps))
			for _, p := range ps {
				fmt.Fprintln(c.io.Stderr, "  "+p.String())
			}
		} else {
			fmt.Fprintf(c.io.Stderr, "contactsync: %v\n", err)
		}
		return nil, ExitUsage
	}
	return cfg, ExitOK
}

// logger builds the logger the configuration asks for. One-shot commands
// print their own summary, so they log warnings only unless -v.
func (c *cmdCtx) logger(cfg *config.Config, daemon bool) *slog.Logger {
	level := slog.LevelInfo
	switch cfg.Log.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	if !daemon && !c.verbose && level < slog.LevelWarn {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(c.io.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(c.io.Stderr, opts))
}

// openState opens the state file; with lock, it also takes the
// one-process lock that runs need.
func (c *cmdCtx) openState(ctx context.Context, cfg *config.Config, log *slog.Logger, lock bool) (*state.DB, func(), error) {
	release := func() error { return nil }
	if lock {
		if err := os.MkdirAll(filepath.Dir(cfg.State), 0o700); err != nil {
			return nil, nil, fmt.Errorf("state: %w", err)
		}
		r, err := state.Lock(cfg.State)
		if err != nil {
			return nil, nil, err
		}
		release = r
	}
	db, err := state.Open(ctx, cfg.State, log)
	if err != nil {
		_ = release()
		return nil, nil, err
	}
	return db, func() {
		_ = db.Close()
		_ = release()
	}, nil
}

// session is what most commands open: the configuration, a logger and
// the state.
type session struct {
	cfg   *config.Config
	log   *slog.Logger
	db    *state.DB
	close func()
}

// open loads the configuration and opens the state, taking the one-process
// lock with lock. On failure it has printed why and returns the exit status.
func (c *cmdCtx) open(ctx context.Context, daemon, lock bool) (*session, int) {
	cfg, code := c.load()
	if cfg == nil {
		return nil, code
	}
	log := c.logger(cfg, daemon)
	db, closeDB, err := c.openState(ctx, cfg, log, lock)
	if err != nil {
		return nil, c.fail(err)
	}
	return &session{cfg: cfg, log: log, db: db, close: closeDB}, ExitOK
}

func (c *cmdCtx) fail(err error) int {
	fmt.Fprintf(c.io.Stderr, "contactsync %s: %v\n", c.name, err)
	return ExitFailed
}

// multi is a repeatable string flag (--job a --job b).
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }
