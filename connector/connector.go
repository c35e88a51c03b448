// Package connector is contactsync's domain: source records, Webex contacts,
// the YAML mapping between them, the plan (what to create, update and delete),
// the run engine, and the small interfaces that sources, sinks and the state
// store implement.
//
// Each capability is one small interface. Implementations live in their own
// packages (sources/csvdrop, sources/ldap, sinks/csvfile, sinks/webexapi,
// state) and are registered by the config package in one explicit map.
package connector

import (
	"context"
	"log/slog"
	"time"
)

// Record is one source record: a CSV row or an LDAP entry.
//
// Names are lower-case so that mapping templates match attribute names
// case-insensitively. A source may share one Names slice between records
// (the CSV header) or refill one buffer for every record (LDAP): a Record
// is valid only during the Emitter call it is passed to. Only the first value
// of a multi-valued attribute is kept: the Webex contact schema has no field
// that takes several values of one attribute.
type Record struct {
	Key    string   // stable identity (CSV key column, entryUUID, objectGUID)
	Origin string   // where it came from, for messages: "drop.csv:12" or a DN
	Names  []string // lower-case attribute or column names
	Values []string // Values[i] is the (first) value of Names[i]
}

// Get returns the value of the attribute named name (lower-case).
func (r *Record) Get(name string) (string, bool) {
	for i, n := range r.Names {
		if n == name {
			if i < len(r.Values) {
				return r.Values[i], true
			}
			return "", true
		}
	}
	return "", false
}

// Emitter receives what a source pulls. Its methods must be called from one
// goroutine. A record passed to Record is not retained after the call
// returns, so a source may reuse its buffers.
type Emitter interface {
	// Record hands over one record. Within a pull, a later record with the
	// same key replaces an earlier one (a CSV file in "changes" mode after an
	// older one).
	Record(r *Record) error
	// Reject reports that the record with this key cannot be read (a
	// duplicate key in one file, say). It is final for the pull: any record
	// of that key already handed over is dropped, and the stored contact is
	// neither updated nor deleted.
	Reject(key, origin, reason string) error
	// Delete reports that the record with this key is gone from the source
	// (incremental pulls; a complete pull reports deletions by omission).
	Delete(key, origin string) error
}

// PullRequest says what a run wants from its source.
type PullRequest struct {
	// Cursor is what the source returned in PullResult.Cursor on the last
	// committed run of the job; nil on the first run or after a reset.
	Cursor []byte
	// Full asks for everything, ignoring the cursor (sync --full,
	// full_schedule, reconcile).
	Full bool
	// Peek asks for the current population without consuming anything: a CSV
	// drop source re-reads its newest file even if it was read before.
	// Used by reconcile and preview.
	Peek bool
	// Attributes are the lower-case attribute names the mapping reads; a
	// source that can select attributes (LDAP) asks only for these and its
	// key. Empty with AllAttributes: every attribute.
	Attributes    []string
	AllAttributes bool
	// Limit stops the pull after that many records (preview); 0: no limit.
	Limit int
}

// FromCursor reports whether the request goes on from its cursor: there is
// one, and nothing asks for everything or for a part of it.
func (r *PullRequest) FromCursor() bool {
	return len(r.Cursor) > 0 && !r.Full && !r.Peek && r.Limit == 0
}

// PullResult describes a finished pull.
type PullResult struct {
	// Complete means the records handed over are the whole population, so a
	// stored contact whose key was not seen is gone from the source.
	Complete bool
	// NoChange means there was nothing new to read (no new drop file): the
	// run changes nothing. A missing drop is never an empty source.
	NoChange bool
	// Cursor is stored when the run commits and handed back next time.
	Cursor []byte
	// Identity says what was read, for the audit: file names and checksums,
	// or the LDAP URL, base and filter. Never a secret.
	Identity string
}

// Source pulls records.
type Source interface {
	Pull(ctx context.Context, req PullRequest, emit Emitter) (PullResult, error)
}

// IncrementalSource is a source that can tell, before it pulls, that the
// pull will hand over only what changed since req.Cursor. The engine then
// looks up the keys it is handed instead of reading every entry of the job
// first. A pull that turns out complete all the same (the server refused
// the cursor) is still right, only slower: the engine reads every entry
// once it knows.
type IncrementalSource interface {
	Incremental(req PullRequest) bool
}

// Checker is implemented by sources and sinks that can test their
// connection without changing anything (contactsync check).
type Checker interface {
	// Check returns a one-line description of what was tried, and an error
	// when it failed. Neither may contain a secret.
	Check(ctx context.Context) (string, error)
}

// Closer is implemented by parts that hold connections.
type Closer interface {
	Close() error
}

// RunInfo tells a sink which run it emits for.
type RunInfo struct {
	Job     string
	RunID   int64
	Started time.Time
	Logger  *slog.Logger
	// Journal lets a sink record intent durably before it calls a remote
	// API, so that a crash between the call and its answer never makes a
	// create happen twice.
	Journal Journal
}

// Plan is what a sink is asked to emit: changes that passed the guards.
type Plan interface {
	// Changes calls fn for every change, creates first, then updates, then
	// deletes, each in the order the source produced them. The *Change is
	// reused between calls.
	Changes(fn func(*Change) error) error
	// Rejected calls fn for every rejected source record.
	Rejected(fn func(Rejection) error) error
	// Counts gives the number of changes of each kind.
	Counts() Counts
}

// Outcomes is where a sink reports what became of a change. A change the
// sink says nothing about counts as done: a create becomes pending (it waits
// for its UUID from reconcile), an update or delete is applied.
type Outcomes interface {
	// Bound says a create (or an adoption) gave this contact UUID.
	Bound(key, uuid string)
	// Failed says the change was not applied; it is retried on the next run.
	Failed(key, reason string)
}

// ApplyResult is what a sink reports about a whole emission.
type ApplyResult struct {
	Files []string // output files written, for the audit
}

// Sink emits the difference.
type Sink interface {
	Apply(ctx context.Context, run RunInfo, plan Plan, out Outcomes) (ApplyResult, error)
}

// AtomicSink is a sink whose Apply emits every change of the plan or fails
// as a whole, and reports no outcome per change (a sink writing import
// files). The state of its run can then be written while it emits, since
// what the commit stores does not depend on what Apply reports.
type AtomicSink interface {
	Sink
	// AtomicApply marks the capability; it is never called.
	AtomicApply()
}

// StreamingSink is an AtomicSink that can start writing a run's output
// while the source is still read. The engine can only call Apply once the
// pull is over and the deletion guard has seen the whole plan; a sink that
// makes its output visible only inside Apply (files written under
// temporary names and renamed at the end) can meanwhile write the creates
// the plan starts with, so that Apply is left with the rest.
type StreamingSink interface {
	AtomicSink
	// OpenStream starts the output of a run. It may refuse (the run's name
	// makes no file name, say): the engine then calls Apply as usual, which
	// reports the problem.
	OpenStream(ctx context.Context, run RunInfo) (OutputStream, error)
}

// OutputStream is a run's output being written ahead of Apply. Nothing it
// writes may become visible before Apply: a run that never gets there
// (blocked, failed, interrupted) calls Abort, and a crashed one leaves only
// what the sink's OutputRemover removes.
type OutputStream interface {
	// Create writes the next create of the plan, in plan order: the
	// creates the plan's Changes would yield first. The *Change is reused
	// by the caller. Calls come from one goroutine, and end before Apply
	// or Abort.
	Create(c *Change) error
	// Apply emits the plan as Sink.Apply would, the streamed creates
	// included: plan.Changes yields only the changes after them. On any
	// failure everything the stream wrote is removed.
	Apply(ctx context.Context, plan Plan, out Outcomes) (ApplyResult, error)
	// Abort removes everything the stream wrote. It does nothing after
	// Apply, which published or removed it all.
	Abort()
}

// Adopter is implemented by sinks that can find existing Webex contacts
// before a job's first run (the Webex API sink, through search). The engine
// asks it for contacts matching the creates of a plan; each adopted create
// becomes a bind (and an update when the content differs).
type Adopter interface {
	// Existing calls fn for every contact the organization holds that the
	// sink may edit (source CH).
	Existing(ctx context.Context, fn func(uuid string, c *Contact) error) error
}
