package connector

// Change is one difference to emit.
type Change struct {
	Action Action
	Key    string
	// UUID is the Webex contact's id: empty for a create, and for a delete
	// of a contact whose create was never reconciled.
	UUID string
	// Contact is the new content (create, update) or the last emitted one
	// (delete).
	Contact Contact
	// Old is the last emitted content (update only).
	Old Contact
	// Reason says why a delete happens ("gone from the source").
	Reason string
}

// outcomes collects what the sink reports.
type outcomes struct {
	bound  map[string]string
	failed map[string]string
}

func (o *outcomes) Bound(key, uuid string)    { o.bound[key] = uuid }
func (o *outcomes) Failed(key, reason string) { o.failed[key] = reason }

// enginePlan is the plan as a sink reads it. With skipStaged, for an
// OutputStream's Apply, the creates staged (and streamed) during the pull
// are left out.
type enginePlan struct {
	r          *runner
	skipStaged bool
}

func (p *enginePlan) Counts() Counts { return p.r.counts }

func (p *enginePlan) Changes(fn func(*Change) error) error {
	var c Change
	for _, seg := range []int{segCreate, segUpdate, segDelete} {
		skip := flagHeld | flagSilent
		if p.skipStaged && seg == segCreate {
			if !p.r.sp.anyUnstaged(segCreate) {
				continue // a first import: not a million records read to skip them
			}
			skip |= flagStaged
		}
		err := p.r.sp.each(seg, func(rec *spoolRec) error {
			if rec.flags&skip != 0 {
				return nil
			}
			c = Change{Action: rec.action, Key: rec.key, UUID: rec.uuid, Contact: rec.new, Reason: rec.reason}
			if rec.hasOld {
				c.Old = rec.old
			}
			if a, ok := p.r.adopted[rec.key]; ok && rec.action == ActionCreate {
				if a.contact == rec.new {
					return nil // adopted as is: a bind, nothing to emit
				}
				c.Action, c.UUID, c.Old = ActionUpdate, a.uuid, a.contact
			}
			return fn(&c)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *enginePlan) Rejected(fn func(Rejection) error) error {
	return p.r.sp.each(segReject, func(rec *spoolRec) error {
		return fn(Rejection{Key: rec.key, Origin: rec.uuid, Reason: rec.reason})
	})
}
