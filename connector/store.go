package connector

import (
	"context"
	"time"
)

// Action is what a change does to a Webex contact.
type Action string

// The actions of a change. ActionBind is recorded by reconcile and adoption:
// a UUID bound to a source record, without emitting anything.
const (
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
	ActionBind   Action = "bind"
	// ActionTouch is internal: it refreshes an entry's SourceHash when a
	// record mapped to the contact already stored (the mapping changed, or
	// a column the mapping does not read). Nothing is emitted or audited.
	ActionTouch Action = "touch"
)

// Run statuses. StatusRunning is only seen while a run is under way, or
// after a crash until the next run marks it failed.
const (
	StatusRunning = "running"
	StatusOK      = "ok"
	StatusFailed  = "failed"
	StatusBlocked = "blocked"
	StatusDryRun  = "dry_run"
)

// Counts are a run's figures.
type Counts struct {
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Deleted   int `json:"deleted"`
	Unchanged int `json:"unchanged"`
	Rejected  int `json:"rejected"`
	// Adopted counts existing contacts bound to source records (adoption,
	// reconcile).
	Adopted int `json:"adopted"`
	// Waiting counts changes held back: updates to contacts whose UUID is
	// still pending, and changes a safety.allow switch turned off.
	Waiting int `json:"waiting"`
	// Source is the number of records the source handed over.
	Source int `json:"source_records"`
}

// Run is one recorded run of a job.
type Run struct {
	ID         int64     `json:"id"`
	Job        string    `json:"job"`
	Kind       string    `json:"kind"` // sync, dry_run, reconcile
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Status     string    `json:"status"`
	Counts
	Reason     string   `json:"reason,omitempty"` // why it failed or was blocked
	ConfigHash string   `json:"config_hash,omitempty"`
	Source     string   `json:"source,omitempty"` // PullResult.Identity
	Files      []string `json:"files,omitempty"`
	Trigger    string   `json:"trigger,omitempty"` // cli, schedule
}

// Entry is what the state knows of one managed contact.
type Entry struct {
	Key  string
	UUID string // empty while pending (created through a file, not yet reconciled)
	// Status: "bound" (UUID known), "pending" (emitted as a create, UUID to
	// come) or "failed" (a create that was not applied; retried next run).
	Status string
	// Hash is the hash of the last emitted content (Contact).
	Hash Hash
	// Desired is the hash of content that is waiting to be emitted (an
	// update to a pending contact, or a change that failed); zero if none.
	Desired Hash
	// SourceHash is the digest of the source record (and the mapping) that
	// produced Hash; zero when unknown. A record with the same source hash
	// maps to the same contact, so the engine skips its mapping.
	SourceHash Hash
}

// Entry statuses.
const (
	EntryBound   = "bound"
	EntryPending = "pending"
	EntryFailed  = "failed"
)

// StoredContact is an entry with its contents.
type StoredContact struct {
	Entry
	Contact        Contact // last emitted
	DesiredContact Contact // valid when Entry.Desired is set
}

// ChangeRecord is one change as the state commits and the audit shows it.
type ChangeRecord struct {
	Action Action
	Key    string
	UUID   string
	// Status is the entry status after the change (bound, pending, failed);
	// for a delete, "deleted"; for a failed change, "failed".
	Status  string
	Old     *Contact // nil for a create
	New     *Contact // nil for a delete
	Reason  string   // a delete's or a failure's reason
	Applied bool     // false: the change failed or is held back; the entry keeps its emitted content
	// SourceHash is stored with an applied create, update or bind that sets
	// the entry's content (zero: unknown, the next run maps the record), and
	// by a touch. It is not part of the audit.
	SourceHash Hash
	// NewHash is New.Hash() when the engine already has it (a create
	// staged during the pull: the mapping hashed the contact); zero: the
	// store computes it. It spares a SHA-256 a create in a first import.
	NewHash Hash
	// NewJSON is New.Marshal() when the engine already has it (a create
	// staged during the pull: a mapping worker encoded it), never written
	// again; nil: the store encodes New. It takes the encoding off the
	// goroutine that writes the state, the slowest of a first import.
	NewJSON []byte
}

// Rejection is a source record that could not become a contact.
type Rejection struct {
	Key    string `json:"key"`
	Origin string `json:"origin,omitempty"`
	Reason string `json:"reason"`
}

// Commit is everything one run changes in the state, applied in one
// transaction: either all of it is stored, or nothing is.
type Commit struct {
	Run Run // with its final status, figures and files
	// Cursor replaces the job's source cursor when SetCursor is true.
	Cursor    []byte
	SetCursor bool
	// Changes yields every change of the run. Applied creates and updates
	// store New as the entry's emitted content; applied deletes remove the
	// entry; changes that were not applied store New as the entry's desired
	// content (creating an entry with status "failed" for a create).
	// Touches set only the entry's SourceHash, with no audit row.
	Changes func(yield func(*ChangeRecord) error) error
	// Rejected yields the run's rejected records.
	Rejected func(yield func(Rejection) error) error
	// ConsumeApproval removes the job's pending approval (approve) in the
	// same transaction.
	ConsumeApproval bool
	// KeepDays prunes run detail (changes, rejections) of runs older than
	// that many days; 0 keeps everything.
	KeepDays int
}

// Store is the state: which Webex contact belongs to which source record,
// what was last emitted, and the audit of every run.
type Store interface {
	Journal
	// StartRun records that a run began (status running), committed at
	// once so that a crash leaves a trace, and returns its id.
	StartRun(ctx context.Context, r Run) (int64, error)
	// FinishRun records the end of a run that commits nothing else
	// (failed, blocked, dry run), with its figures and reason.
	FinishRun(ctx context.Context, r Run) error
	// Commit applies a run's changes and records it, in one transaction.
	Commit(ctx context.Context, c *Commit) error
	// RecoverInterrupted marks runs left "running" by a crashed process as
	// failed and returns them, so their output files can be removed.
	RecoverInterrupted(ctx context.Context, reason string) ([]Run, error)

	// Entries calls fn for every managed contact of the job, with hashes only.
	Entries(ctx context.Context, job string, fn func(Entry) error) error
	// Contacts loads the stored contacts of the given keys (missing keys are
	// left out of the result).
	Contacts(ctx context.Context, job string, keys []string) (map[string]*StoredContact, error)
	// Cursor returns the job's stored source cursor (nil if none).
	Cursor(ctx context.Context, job string) ([]byte, error)

	// Approve lets the job's next run exceed its deletion guard once.
	Approve(ctx context.Context, job string, by string) error
	// Approved reports whether an approval is pending for the job.
	Approved(ctx context.Context, job string) (bool, error)

	// Runs lists past runs, newest first; job "" means all jobs.
	Runs(ctx context.Context, job string, limit int) ([]Run, error)
	// RunDetail returns one run with its changes and rejections.
	RunDetail(ctx context.Context, id int64) (Run, []ChangeRecord, []Rejection, error)

	Close() error
}

// EntryLookup is a Store that reads some of a job's entries: an incremental
// run of a few changes among a million entries looks up the keys it is
// handed instead of reading every entry (engine_keyed.go).
type EntryLookup interface {
	// EntriesByKey calls fn for each of keys that the job holds.
	EntriesByKey(ctx context.Context, job string, keys []string, fn func(Entry) error) error
	// EntriesWaiting calls fn for each entry whose content waits to be
	// emitted (Desired set).
	EntriesWaiting(ctx context.Context, job string, fn func(Entry) error) error
	// EntryCounts returns how many entries the job holds, and how many are
	// managed contacts (every entry but a failed create).
	EntryCounts(ctx context.Context, job string) (entries, managed int, err error)
}

// Journal records what a sink is about to do to a remote system before it
// does it, committed at once and outside the run's transaction, so that after
// a crash the next run can tell what may have happened.
type Journal interface {
	// Intend records entries before their calls are sent.
	Intend(ctx context.Context, job string, entries []JournalEntry) error
	// Answer records the outcome of entries (the UUID a create got).
	Answer(ctx context.Context, job string, entries []JournalEntry) error
	// Open returns the job's journal entries not yet cleared by a commit.
	Open(ctx context.Context, job string) ([]JournalEntry, error)
	// A successful Commit clears the job's journal in the same transaction.
}

// JournalEntry is one intended remote operation.
type JournalEntry struct {
	RunID   int64
	Key     string
	Op      Action
	UUID    string // known for update/delete; for a create, set by Answer
	Contact Contact
}

// Stager is implemented by stores that can open a run's write transaction
// before the run is over, so that the state's work (SQLite's inserts, most
// of a big first import's commit) overlaps the sink's and the pull's
// instead of following them. Nothing staged is visible, or survives a
// crash, until Stage.Commit.
type Stager interface {
	// Stage opens run's write transaction. It holds the store's writer
	// until Commit or Rollback: no other write may be made meanwhile.
	Stage(ctx context.Context, run Run) (Stage, error)
}

// CreateRecaller is a Stage that can read back the creates applied
// through it, so that a run need keep no copy of them while nothing else
// needs one.
type CreateRecaller interface {
	// Created calls fn with the key and contact of every create applied
	// through the stage and not reverted, in the order applied.
	Created(ctx context.Context, fn func(key string, c *Contact) error) error
}

// Stage is an open run transaction. Its methods must be called from one
// goroutine at a time.
type Stage interface {
	// Apply applies changes as Commit.Changes would be, in order, without
	// committing them.
	Apply(ctx context.Context, changes func(yield func(*ChangeRecord) error) error) error
	// Revert undoes an applied create staged for key, a key the state did
	// not hold: its entry and its audit row are deleted, which is exact
	// because nothing else of the key was stored.
	Revert(ctx context.Context, key string) error
	// Commit applies c.Changes after the staged ones, then records the run
	// (rejections, cursor, approval, retention, journal) exactly as
	// Store.Commit does, and commits it all at once. On failure nothing
	// of the run is stored.
	Commit(ctx context.Context, c *Commit) error
	// Rollback discards the stage. It is idempotent, and a no-op after
	// Commit.
	Rollback() error
}
