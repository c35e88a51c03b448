package notify

import (
	"fmt"
	"strings"

	"github.com/contactsync/contactsync/connector"
)

// maxReason bounds the reason quoted in a message: the first errors are
// what an administrator needs, not a whole stack of them.
const maxReason = 1000

func figures(r connector.Run) string {
	s := fmt.Sprintf("%d created, %d updated, %d deleted, %d unchanged, %d rejected, %d waiting, %d source records",
		r.Created, r.Updated, r.Deleted, r.Unchanged, r.Rejected, r.Waiting, r.Counts.Source)
	if r.Adopted > 0 {
		s += fmt.Sprintf(", %d adopted", r.Adopted)
	}
	return s
}

func reason(r connector.Run) string {
	s := strings.TrimSpace(r.Reason)
	if len(s) > maxReason {
		s = s[:maxReason] + "..."
	}
	return s
}

// summary is the one-line text of a webhook message.
func summary(r connector.Run, host string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "contactsync: job %s %s (run %d", r.Job, verb(r.Status), r.ID)
	if host != "" {
		fmt.Fprintf(&b, " on %s", host)
	}
	b.WriteString(")")
	if why := reason(r); why != "" {
		b.WriteString(": ")
		b.WriteString(strings.Join(strings.Fields(why), " "))
	}
	b.WriteString("; ")
	b.WriteString(figures(r))
	return b.String()
}

// markdown is the Webex space message.
func markdown(r connector.Run, host string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**contactsync**: job `%s` **%s** (run %d", r.Job, verb(r.Status), r.ID)
	if host != "" {
		fmt.Fprintf(&b, " on %s", host)
	}
	b.WriteString(")\n\n")
	if why := reason(r); why != "" {
		// A fenced block keeps markup in an error message from being
		// rendered.
		b.WriteString("```\n")
		b.WriteString(strings.ReplaceAll(why, "```", "'''"))
		b.WriteString("\n```\n\n")
	}
	b.WriteString(figures(r))
	switch r.Status {
	case connector.StatusBlocked:
		fmt.Fprintf(&b, "\n\nNothing was emitted. Check the source, then run `contactsync approve --job %s` if the deletions are expected.", r.Job)
	case connector.StatusFailed:
		fmt.Fprintf(&b, "\n\nSee `contactsync show %d` and the service log.", r.ID)
	}
	return b.String()
}

func verb(status string) string {
	switch status {
	case connector.StatusOK:
		return "succeeded"
	case connector.StatusFailed:
		return "failed"
	case connector.StatusBlocked:
		return "was blocked by a safety guard"
	}
	return status
}
