package webexapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/contactsync/contactsync/connector"
)

// applier is one Apply: the journal's open entries, the outcomes (whose
// implementations need not be safe for concurrent use, so calls are
// serialized here), and the UUIDs already bound in this run.
type applier struct {
	s   *Sink
	run connector.RunInfo
	log *slog.Logger

	open map[string]connector.JournalEntry // key -> open create of an earlier run

	mu      sync.Mutex // guards out, journal calls and claimed
	out     connector.Outcomes
	claimed map[string]bool // UUIDs bound in this run: never bound twice
}

type batch struct {
	action  connector.Action
	changes []connector.Change
}

// Apply sends the plan: creates, then updates, then deletes, in bulk calls
// of batch_size run by up to concurrency workers. Creates are exactly-once:
// each batch is recorded in the journal before it is sent and its UUIDs
// after the answer; a create left open by an earlier run is bound (if its
// UUID is known) or looked up (if the process died before the answer)
// before it is sent again.
func (s *Sink) Apply(ctx context.Context, run connector.RunInfo, plan connector.Plan, out connector.Outcomes) (connector.ApplyResult, error) {
	var res connector.ApplyResult
	if run.Journal == nil {
		return res, errors.New("webex: apply: no journal: creates could not be made safe to retry")
	}
	log := run.Logger
	if log == nil {
		log = s.log
	}
	job := run.Job
	if job == "" {
		job = s.job
	}
	run.Job = job
	s.c.resetBudget()
	a := &applier{s: s, run: run, log: log, out: out, open: map[string]connector.JournalEntry{}, claimed: map[string]bool{}}
	entries, err := run.Journal.Open(ctx, job)
	if err != nil {
		return res, fmt.Errorf("webex: apply: read the journal: %w", err)
	}
	for _, e := range entries {
		if e.Op != connector.ActionCreate {
			continue
		}
		// An entry with a UUID wins over one without: that create is known
		// to have happened.
		if prev, ok := a.open[e.Key]; !ok || prev.UUID == "" {
			a.open[e.Key] = e
		}
		if e.UUID != "" {
			a.claimed[e.UUID] = true
		}
	}
	if len(a.open) > 0 {
		log.Info("webex: journal holds creates of an interrupted run; they are bound or looked up, not sent again", "entries", len(a.open))
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan batch)
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	for i := 0; i < s.cfg.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if err := a.do(ctx, b); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
				}
			}
		}()
	}
	planned := map[string]bool{} // keys of the plan's creates
	cur := batch{}
	flush := func() error {
		if len(cur.changes) == 0 {
			return nil
		}
		select {
		case work <- cur:
		case <-ctx.Done():
			return ctx.Err()
		}
		cur = batch{}
		return nil
	}
	perr := plan.Changes(func(ch *connector.Change) error {
		if ch.Action != cur.action || len(cur.changes) >= s.cfg.BatchSize {
			if err := flush(); err != nil {
				return err
			}
			cur.action = ch.Action
		}
		if ch.Action == connector.ActionCreate && len(a.open) > 0 {
			planned[ch.Key] = true
		}
		if ch.Action == connector.ActionDelete && ch.UUID == "" {
			// Never bound to a Webex contact: there is nothing to delete.
			return nil
		}
		cur.changes = append(cur.changes, *ch)
		return nil
	})
	if perr == nil {
		perr = flush()
	}
	close(work)
	wg.Wait()
	for key, e := range a.open {
		if e.UUID != "" && !planned[key] && perr == nil && firstErr == nil {
			// Created by an interrupted run for a record that is no longer a
			// create (gone from the source, or bound meanwhile): say so, as
			// the commit of this run clears the journal.
			log.Warn("webex: a contact created by an interrupted run is not in this run's plan; check it in Control Hub",
				"key", key, "uuid", e.UUID, "display_name", e.Contact[connector.DisplayName])
		}
	}
	if firstErr != nil {
		return res, firstErr
	}
	if perr != nil {
		return res, fmt.Errorf("webex: apply: %w", perr)
	}
	return res, ctx.Err()
}

func (a *applier) do(ctx context.Context, b batch) error {
	switch b.action {
	case connector.ActionCreate:
		return a.creates(ctx, b.changes)
	case connector.ActionUpdate:
		return a.updates(ctx, b.changes)
	case connector.ActionDelete:
		return a.deletes(ctx, b.changes)
	}
	return fmt.Errorf("webex: apply: unsupported action %q for key %s", b.action, b.changes[0].Key)
}

func (a *applier) bound(key, uuid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.claimed[uuid] = true
	a.out.Bound(key, uuid)
}

func (a *applier) failed(key, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.out.Failed(key, reason)
}

func (a *applier) journal(ctx context.Context, intend bool, entries []connector.JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if intend {
		return a.run.Journal.Intend(ctx, a.run.Job, entries)
	}
	return a.run.Journal.Answer(ctx, a.run.Job, entries)
}

// creates resolves the open journal entries of a batch, then creates the
// rest, and sends updates for contacts bound with other content.
func (a *applier) creates(ctx context.Context, changes []connector.Change) error {
	var fresh, updates []connector.Change
	for i := range changes {
		ch := changes[i]
		e, ok := a.open[ch.Key]
		switch {
		case !ok:
			fresh = append(fresh, ch)
		case e.UUID != "":
			a.bound(ch.Key, e.UUID)
			if e.Contact != ch.Contact {
				updates = append(updates, asUpdate(ch, e.UUID, e.Contact))
			}
		default:
			uuid, got, err := a.lookup(ctx, &ch.Contact)
			if err != nil {
				return err
			}
			if uuid == "" {
				fresh = append(fresh, ch)
				continue
			}
			a.log.Info("webex: bound a contact created by an interrupted run", "key", ch.Key, "uuid", uuid)
			// Answered under the run that intended it, so that the entry is
			// matched (a journal matches answers by run, key and operation).
			if err := a.journal(ctx, false, []connector.JournalEntry{{RunID: e.RunID, Key: ch.Key, Op: connector.ActionCreate, UUID: uuid, Contact: e.Contact}}); err != nil {
				return fmt.Errorf("webex: journal answer: %w", err)
			}
			a.bound(ch.Key, uuid)
			if *got != ch.Contact {
				updates = append(updates, asUpdate(ch, uuid, *got))
			}
		}
	}
	more, err := a.createBatch(ctx, fresh, 0)
	if err != nil {
		return err
	}
	updates = append(updates, more...)
	if len(updates) == 0 {
		return nil
	}
	return a.updates(ctx, updates)
}

func asUpdate(ch connector.Change, uuid string, old connector.Contact) connector.Change {
	ch.Action, ch.UUID, ch.Old = connector.ActionUpdate, uuid, old
	return ch
}

// maxRecover bounds how often a batch whose answer was lost is looked up
// and sent again within one run; past it the run fails and the next run
// resolves the journal.
const maxRecover = 2

// createBatch records the intent, sends the creates, and records the UUIDs.
// When the answer is lost, each contact is looked up: found ones are bound
// and returned as updates if they differ, the others created again.
func (a *applier) createBatch(ctx context.Context, changes []connector.Change, depth int) ([]connector.Change, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	intents := make([]connector.JournalEntry, len(changes))
	for i := range changes {
		intents[i] = connector.JournalEntry{RunID: a.run.RunID, Key: changes[i].Key, Op: connector.ActionCreate, Contact: changes[i].Contact}
	}
	if err := a.journal(ctx, true, intents); err != nil {
		return nil, fmt.Errorf("webex: journal intent of %d creates: %w", len(changes), err)
	}
	ans, err := a.bulk(ctx, changes, false)
	var amb *ambiguousError
	switch {
	case errors.As(err, &amb) && depth < maxRecover:
		a.log.Warn("webex: the answer to a bulk create was lost; looking the contacts up before sending them again", "contacts", len(changes), "error", err)
		var again, updates []connector.Change
		for i := range changes {
			uuid, got, err := a.lookup(ctx, &changes[i].Contact)
			if err != nil {
				return nil, err
			}
			if uuid == "" {
				again = append(again, changes[i])
				continue
			}
			if err := a.journal(ctx, false, []connector.JournalEntry{{RunID: a.run.RunID, Key: changes[i].Key, Op: connector.ActionCreate, UUID: uuid, Contact: changes[i].Contact}}); err != nil {
				return nil, fmt.Errorf("webex: journal answer: %w", err)
			}
			a.bound(changes[i].Key, uuid)
			if *got != changes[i].Contact {
				updates = append(updates, asUpdate(changes[i], uuid, *got))
			}
		}
		more, err := a.createBatch(ctx, again, depth+1)
		return append(updates, more...), err
	case err != nil:
		if a.fatal(err) {
			return nil, fmt.Errorf("webex: bulk create of %d contacts: %w", len(changes), err)
		}
		if isStatus(err, http.StatusBadRequest) && len(changes) > 1 {
			// One bad contact fails the whole call: split to find it.
			h := len(changes) / 2
			u1, err := a.createBatch(ctx, changes[:h], depth)
			if err != nil {
				return nil, err
			}
			u2, err := a.createBatch(ctx, changes[h:], depth)
			return append(u1, u2...), err
		}
		for i := range changes {
			a.failed(changes[i].Key, fmt.Sprintf("webex: create %s: %v", describe(&changes[i]), err))
		}
		return nil, nil
	}
	var answered []connector.JournalEntry
	var ids []string
	for i := range changes {
		if i < len(ans.Contacts) && ans.Contacts[i] != nil && ans.Contacts[i].ContactID != "" {
			e := intents[i]
			e.UUID = ans.Contacts[i].ContactID
			answered = append(answered, e)
			ids = append(ids, e.UUID)
		}
	}
	// The UUIDs are durable before the engine hears of them: a crash from
	// here on binds instead of creating again.
	if err := a.journal(ctx, false, answered); err != nil {
		return nil, fmt.Errorf("webex: journal answer of %d creates (UUIDs %v): %w", len(answered), ids, err)
	}
	for _, e := range answered {
		a.bound(e.Key, e.UUID)
	}
	a.reportFailures(changes, ans, "create")
	return nil, nil
}

// fatal tells errors that end the run (the token, the budget, a cancelled
// context) from those that fail only the contacts of one call.
func (a *applier) fatal(err error) bool {
	var be *budgetError
	var amb *ambiguousError
	return errors.Is(err, ErrTokenRejected) || errors.As(err, &be) || errors.As(err, &amb) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || !isStatusErr(err)
}

func isStatusErr(err error) bool {
	var se *statusError
	return errors.As(err, &se)
}

// bulk sends one POST .../contacts/bulk; create is told by an empty UUID.
func (a *applier) bulk(ctx context.Context, changes []connector.Change, idempotent bool) (*bulkAnswer, error) {
	body := bulkBody{Schemas: Schema, Contacts: make([]*contactBody, len(changes))}
	kind := "create"
	for i := range changes {
		ch := &changes[i]
		if ch.Action == connector.ActionUpdate {
			kind = "update"
			body.Contacts[i] = buildBody(ch.UUID, &ch.Contact, &ch.Old)
		} else {
			body.Contacts[i] = buildBody("", &ch.Contact, nil)
		}
	}
	what := fmt.Sprintf("bulk %s of %d contacts", kind, len(changes))
	resp, err := a.s.c.do(ctx, request{method: http.MethodPost, url: a.s.c.contactsURL("/bulk", nil), body: body, idempotent: idempotent, what: what})
	if err != nil {
		return nil, err
	}
	var ans bulkAnswer
	if err := json.Unmarshal(resp.body, &ans); err != nil {
		// The call was made: for creates this is as bad as a lost answer.
		return nil, &ambiguousError{fmt.Errorf("%s: unreadable answer: %w", what, err)}
	}
	return &ans, nil
}

// reportFailures turns failedContacts (id: the item's index, as a string)
// and null slots into Failed outcomes naming each contact.
func (a *applier) reportFailures(changes []connector.Change, ans *bulkAnswer, verb string) {
	reported := map[int]bool{}
	for _, f := range ans.FailedContacts {
		i, err := strconv.Atoi(f.ID)
		if err != nil || i < 0 || i >= len(changes) || reported[i] {
			a.log.Warn("webex: failedContacts entry with an unknown id", "id", f.ID, "message", f.ErrorMessage)
			continue
		}
		reported[i] = true
		if verb == "update" && (f.StatusCode == http.StatusNotFound || f.StatusCode == http.StatusGone) {
			a.failed(changes[i].Key, goneReason(&changes[i]))
			continue
		}
		a.failed(changes[i].Key, fmt.Sprintf("webex: %s %s rejected: %s (status %d, errorCode %s)",
			verb, describe(&changes[i]), f.ErrorMessage, f.StatusCode, f.ErrorCode))
	}
	for i := range changes {
		if reported[i] {
			continue
		}
		if i >= len(ans.Contacts) || ans.Contacts[i] == nil {
			a.failed(changes[i].Key, fmt.Sprintf("webex: %s %s: no contact in the answer and no failure given", verb, describe(&changes[i])))
		}
	}
}

// goneReason explains an update to a contact that no longer exists in
// Webex, most likely deleted by hand in Control Hub. Creating it again
// silently would undo an administrator's decision, so the update fails on
// every run until the operator chooses.
func goneReason(ch *connector.Change) string {
	return fmt.Sprintf("webex: update %s: contact %s no longer exists in Webex (deleted in Control Hub?); "+
		"it is not created again on its own: remove the record from the source to stop managing it, "+
		"or remove it for one run and add it back to create it anew", describe(ch), ch.UUID)
}

func (a *applier) updates(ctx context.Context, changes []connector.Change) error {
	for len(changes) > 0 {
		n := min(len(changes), a.s.cfg.BatchSize)
		if err := a.updateBatch(ctx, changes[:n]); err != nil {
			return err
		}
		changes = changes[n:]
	}
	return nil
}

func (a *applier) updateBatch(ctx context.Context, changes []connector.Change) error {
	// Resending an update leaves the same contact: safe to retry after 5xx.
	ans, err := a.bulk(ctx, changes, true)
	if err != nil {
		if a.fatal(err) {
			return fmt.Errorf("webex: bulk update of %d contacts: %w", len(changes), err)
		}
		if isStatus(err, http.StatusBadRequest) && len(changes) > 1 {
			h := len(changes) / 2
			if err := a.updateBatch(ctx, changes[:h]); err != nil {
				return err
			}
			return a.updateBatch(ctx, changes[h:])
		}
		for i := range changes {
			a.failed(changes[i].Key, fmt.Sprintf("webex: update %s (contact %s): %v", describe(&changes[i]), changes[i].UUID, err))
		}
		return nil
	}
	a.reportFailures(changes, ans, "update")
	return nil
}

// deletes removes a batch with bulk delete. If the API refuses the batch
// (say, one contact is already gone), each contact is deleted on its own,
// where a 404 means the contact is already gone: success.
func (a *applier) deletes(ctx context.Context, changes []connector.Change) error {
	body := bulkDeleteBody{Schemas: Schema, ObjectIDs: make([]string, len(changes))}
	for i := range changes {
		body.ObjectIDs[i] = changes[i].UUID
	}
	what := fmt.Sprintf("bulk delete of %d contacts", len(changes))
	_, err := a.s.c.do(ctx, request{method: http.MethodPost, url: a.s.c.contactsURL("/bulk/delete", nil), body: body, idempotent: true, what: what})
	if err == nil {
		return nil
	}
	if a.fatal(err) {
		return fmt.Errorf("webex: %s: %w", what, err)
	}
	a.log.Warn("webex: bulk delete refused; deleting one by one", "contacts", len(changes), "error", err)
	for i := range changes {
		ch := &changes[i]
		_, err := a.s.c.do(ctx, request{method: http.MethodDelete, url: a.s.c.contactsURL("/"+ch.UUID, nil), idempotent: true, what: "delete " + ch.UUID})
		switch {
		case err == nil, isStatus(err, http.StatusNotFound, http.StatusGone):
		case a.fatal(err):
			return fmt.Errorf("webex: delete %s (contact %s): %w", describe(ch), ch.UUID, err)
		default:
			a.failed(ch.Key, fmt.Sprintf("webex: delete %s (contact %s): %v", describe(ch), ch.UUID, err))
		}
	}
	return nil
}

// lookup searches the organization for a contact this sink may have created
// without hearing the answer: same display name, and same phone number 1 or
// email. A contact already bound in this run is never bound again.
func (a *applier) lookup(ctx context.Context, want *connector.Contact) (string, *connector.Contact, error) {
	keyword := want[connector.DisplayName]
	if keyword == "" {
		keyword = want[connector.Email]
	}
	var uuid string
	var found connector.Contact
	err := a.s.search(ctx, keyword, func(ac *apiContact) error {
		c := ac.toContact()
		if !matches(want, &c) {
			return nil
		}
		a.mu.Lock()
		taken := a.claimed[ac.ContactID]
		a.claimed[ac.ContactID] = true // two workers never take the same one
		a.mu.Unlock()
		if taken {
			return nil
		}
		uuid, found = ac.ContactID, c
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return "", nil, fmt.Errorf("webex: look up %q: %w", keyword, err)
	}
	if uuid == "" {
		return "", nil, nil
	}
	return uuid, &found, nil
}
