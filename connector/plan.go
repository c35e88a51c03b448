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
