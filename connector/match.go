package connector

import (
	"context"
	"strings"
	"unicode"
)

// matcher finds, among contacts that already exist in Control Hub, the one a
// mapped contact is: same display name and same phone number 1, or same
// display name and same email (the contract's adoption rule).
type matcher struct {
	region  string
	items   []matchItem
	byPhone map[string]int
	byEmail map[string]int
	// ambiguous keys match several existing contacts: adopting one of them
	// would be a guess, so none is.
	ambiguous map[string]bool
}

type matchItem struct {
	uuid   string
	packed string // the contact, packContact: 200,000 of them are held
	origin string
	used   bool
}

type adoption struct {
	uuid    string
	contact Contact
}

func newMatcher(region string) *matcher {
	return &matcher{region: region, byPhone: map[string]int{}, byEmail: map[string]int{}, ambiguous: map[string]bool{}}
}

func (m *matcher) keys(c *Contact) (phone, email string) {
	name := strings.ToLower(strings.Join(strings.Fields(c[DisplayName]), " "))
	if name == "" {
		return "", ""
	}
	if p := matchPhone(c[Phone1], c[Phone1Type], m.region); p != "" {
		phone = name + "\x00" + p
	}
	if e := strings.ToLower(strings.TrimSpace(c[Email])); e != "" {
		email = name + "\x00" + e
	}
	return phone, email
}

func (m *matcher) add(uuid, origin string, c *Contact) {
	i := len(m.items)
	m.items = append(m.items, matchItem{uuid: uuid, packed: packContact(c), origin: origin})
	phone, email := m.keys(c)
	for _, k := range [...]struct {
		key string
		idx map[string]int
	}{{phone, m.byPhone}, {email, m.byEmail}} {
		if k.key == "" {
			continue
		}
		if _, dup := k.idx[k.key]; dup {
			m.ambiguous[k.key] = true
			continue
		}
		k.idx[k.key] = i
	}
}

// contact returns item i's contact.
func (m *matcher) contact(i int) Contact { return unpackContact(m.items[i].packed) }

// find returns the unused existing contact c matches, or -1.
func (m *matcher) find(c *Contact) int {
	phone, email := m.keys(c)
	for _, k := range [...]struct {
		key string
		idx map[string]int
	}{{phone, m.byPhone}, {email, m.byEmail}} {
		if k.key == "" || m.ambiguous[k.key] {
			continue
		}
		if i, ok := k.idx[k.key]; ok && !m.items[i].used {
			return i
		}
	}
	return -1
}

// matchPhone renders a number for comparison: E.164 when it parses, else
// its digits (with a leading +), so "01 23 45 67 89" and "+33123456789"
// match under region FR.
func matchPhone(value, typ, region string) string {
	value = strings.TrimSpace(value)
	if value == "" {
		return ""
	}
	if typ == "" {
		typ = "work"
	}
	if n, err := NormalizePhone(value, strings.ToLower(typ), region); err == nil && n != "" {
		return n
	}
	var b strings.Builder
	for i, r := range value {
		if unicode.IsDigit(r) || (i == 0 && r == '+') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// adopt asks the sink for the organization's existing contacts and binds
// the plan's creates that match one, so a first run never duplicates a
// contact typed in by hand. Contacts that match nothing are left alone.
func (r *runner) adopt(ctx context.Context, ad Adopter) error {
	m := newMatcher(r.job.PhoneRegion)
	if err := ad.Existing(ctx, func(uuid string, c *Contact) error {
		m.add(uuid, "", c)
		return nil
	}); err != nil {
		return err
	}
	// Creates an interrupted run may have made are the sink's to resolve
	// through the journal: it binds them as the creates they were. Adopting
	// them instead would record contactsync's own contacts as found ones,
	// and leave the sink warning about creates missing from the plan.
	journaled := map[string]bool{}
	open, err := r.e.Store.Open(ctx, r.job.Name)
	if err != nil {
		return err
	}
	uuids := map[string]bool{}
	for _, je := range open {
		if je.Op == ActionCreate {
			journaled[je.Key] = true
			uuids[je.UUID] = je.UUID != ""
		}
	}
	for i := range m.items {
		if uuids[m.items[i].uuid] {
			m.items[i].used = true
		}
	}
	r.adopted = map[string]*adoption{}
	err = r.sp.each(segCreate, func(rec *spoolRec) error {
		if rec.flags&flagHeld != 0 || journaled[rec.key] {
			return nil
		}
		if i := m.find(&rec.new); i >= 0 {
			m.items[i].used = true
			existing := m.contact(i)
			r.adopted[rec.key] = &adoption{uuid: m.items[i].uuid, contact: existing}
			r.log.Info("adopting an existing contact", "key", rec.key, "contact_uuid", m.items[i].uuid)
			// The plan's figures (what a dry run reports, what Plan.Counts
			// tells the sink) count an adopted create as a bind, plus an
			// update when the content differs.
			r.counts.Created--
			r.counts.Adopted++
			if existing != rec.new {
				r.counts.Updated++
			}
		}
		return nil
	})
	r.res.Run.Counts = r.counts
	return err
}
