package connector

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nyaruka/phonenumbers"
)

// MappingConfig is a job's mapping (jobs[i].mapping): how a source record
// becomes a Webex contact. Each value is a Go text/template over the record;
// docs/mapping.md is the user's guide.
//
//	mapping:
//	  display_name: "{{.cn}}"
//	  first_name: "{{.givenName}}"
//	  last_name: "{{.sn}}"
//	  phones:
//	    - {value: "{{.telephoneNumber}}", type: work}
//	    - {value: "{{.mobile}}", type: mobile}
//	  phone_region: FR
//	  email: "{{.mail}}"
//	  title: "{{.title}}"
//	  company_name: '{{index . "Company Name"}}'
//	  address: {street: "{{.street}}", city: "{{.l}}", zip: "{{.postalCode}}"}
//	  group_ids: []
//	  require_phone: true
type MappingConfig struct {
	DisplayName string         `yaml:"display_name"`
	FirstName   string         `yaml:"first_name"`
	LastName    string         `yaml:"last_name"`
	Phones      []PhoneMapping `yaml:"phones"`
	// PhoneRegion is an ISO 3166 region ("FR"). When set, numbers are
	// normalised to E.164 and invalid ones rejected.
	PhoneRegion string         `yaml:"phone_region"`
	Email       string         `yaml:"email"`
	SIPURI      string         `yaml:"sip_uri"`
	Title       string         `yaml:"title"`
	CompanyName string         `yaml:"company_name"`
	Address     AddressMapping `yaml:"address"`
	GroupIDs    []string       `yaml:"group_ids"`
	// RequirePhone defaults to true: phone number 1 and its type are
	// mandatory, the stricter rule of the Control Hub tutorial. False: a
	// phone number or an email is enough (the newer help article).
	RequirePhone *bool `yaml:"require_phone"`
}

// PhoneMapping is one phone number: a template and a literal phone type.
type PhoneMapping struct {
	Value string `yaml:"value"`
	Type  string `yaml:"type"`
}

// AddressMapping holds the templates of the address fields.
type AddressMapping struct {
	Street  string `yaml:"street"`
	City    string `yaml:"city"`
	State   string `yaml:"state"`
	Country string `yaml:"country"`
	Zip     string `yaml:"zip"`
}

// RejectError says why a record cannot become a valid contact. Its Error is
// the reason the operator reads: the field, then what is wrong with which
// value.
type RejectError struct {
	Field  Field
	Reason string
}

func (e *RejectError) Error() string { return e.Field.String() + ": " + e.Reason }

func reject(f Field, format string, args ...any) *RejectError {
	return &RejectError{Field: f, Reason: fmt.Sprintf(format, args...)}
}

// requirePhone resolves the default of require_phone.
func (m *MappingConfig) requirePhone() bool { return m.RequirePhone == nil || *m.RequirePhone }

// simpleField pairs a contact field with its template and YAML key.
type simpleField struct {
	field Field
	key   string // YAML path below the mapping
	src   string
}

func (m *MappingConfig) simpleFields() []simpleField {
	return []simpleField{
		{DisplayName, "display_name", m.DisplayName},
		{FirstName, "first_name", m.FirstName},
		{LastName, "last_name", m.LastName},
		{Email, "email", m.Email},
		{SIPURI, "sip_uri", m.SIPURI},
		{Title, "title", m.Title},
		{CompanyName, "company_name", m.CompanyName},
		{AddressStreet, "address.street", m.Address.Street},
		{AddressCity, "address.city", m.Address.City},
		{AddressState, "address.state", m.Address.State},
		{AddressCountry, "address.country", m.Address.Country},
		{AddressZip, "address.zip", m.Address.Zip},
	}
}

// Validate reports every problem of the mapping under v, which is already at
// the mapping's path (jobs[0].mapping).
func (m *MappingConfig) Validate(v *Validator) {
	m.validate(v, nil)
}

// validate checks the mapping; when b is not nil it also collects the
// compiled templates into it.
func (m *MappingConfig) validate(v *Validator, b *mappingBuilder) {
	v.Required("display_name", m.DisplayName)
	for _, f := range m.simpleFields() {
		t, err := b.parse(f.key, f.src)
		if err != nil {
			v.Errorf(f.key, "%v", err)
			continue
		}
		b.setField(f.field, t)
	}

	if len(m.Phones) > MaxPhones {
		v.Errorf("phones", "%d phones, at most %d (Control Hub has Phone Number 1 to %d)", len(m.Phones), MaxPhones, MaxPhones)
	}
	pv := v.At("phones")
	for i, p := range m.Phones {
		iv := pv.Index(i)
		if strings.TrimSpace(p.Value) == "" {
			iv.Errorf("value", "must be set")
		} else if t, err := b.parse(fmt.Sprintf("phones[%d].value", i), p.Value); err != nil {
			iv.Errorf("value", "%v", err)
		} else {
			if fixed, ok := fixedText(p.Value); ok && ValidPhoneType(p.Type) {
				// A literal number (a switchboard) is checked now rather
				// than rejecting every record at run time.
				if _, err := NormalizePhone(fixed, p.Type, m.validRegion()); err != nil {
					iv.Errorf("value", "%v", err)
				}
			}
			b.addPhone(t, p.Type)
		}
		switch {
		case p.Type == "":
			iv.Errorf("type", "must be set (one of %s)", strings.Join(PhoneTypes, ", "))
		case !ValidPhoneType(p.Type):
			iv.Errorf("type", "unknown phone type %q", p.Type)
		}
	}
	switch {
	case m.requirePhone() && len(m.Phones) == 0:
		v.Errorf("phones", "at least one phone is needed: phone number 1 is mandatory unless require_phone is false")
	case !m.requirePhone() && len(m.Phones) == 0 && strings.TrimSpace(m.Email) == "":
		v.Errorf("phones", "a phone or an email must be mapped: a contact needs one of them")
	}
	if m.PhoneRegion != "" {
		if _, ok := phoneRegion(m.PhoneRegion); !ok {
			v.Errorf("phone_region", "unknown region %q (an ISO 3166 two-letter code such as FR)", m.PhoneRegion)
		}
	}

	if len(m.GroupIDs) > MaxGroups {
		v.Errorf("group_ids", "%d group ids, at most %d (Control Hub has Group ID 1 to %d)", len(m.GroupIDs), MaxGroups, MaxGroups)
	}
	gv := v.At("group_ids")
	for i, g := range m.GroupIDs {
		t, err := b.parse(fmt.Sprintf("group_ids[%d]", i), g)
		if err != nil {
			gv.Index(i).Errorf("", "%v", err)
			continue
		}
		b.addGroup(t)
	}
}

// validRegion returns the upper-case region, or "" when it is unset or
// unknown (reported on its own).
func (m *MappingConfig) validRegion() string {
	r, ok := phoneRegion(m.PhoneRegion)
	if !ok {
		return ""
	}
	return r
}

// fixedText reports whether a template is plain text, and returns it.
func fixedText(src string) (string, bool) {
	if strings.Contains(src, "{{") {
		return "", false
	}
	return strings.TrimSpace(src), true
}

// phoneRegion returns the upper-case form of a supported region.
func phoneRegion(r string) (string, bool) {
	u := strings.ToUpper(strings.TrimSpace(r))
	return u, phonenumbers.GetSupportedRegions()[u]
}

// Compile validates the mapping and compiles its templates, once for a run.
func (m *MappingConfig) Compile() (*Mapping, error) {
	b := &mappingBuilder{m: &Mapping{requirePhone: m.requirePhone(), fingerprint: m.fingerprint()}, attrIndex: map[string]int{}}
	v := NewValidator("")
	m.validate(v, b)
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	b.m.region = m.validRegion()
	for i := range b.m.phones {
		p := &b.m.phones[i]
		if txt, ok := p.t.constant(); ok {
			if clean, err := cleanValue(Phone1, txt); err == nil {
				if num, err := NormalizePhone(clean, p.typ, b.m.region); err == nil {
					p.fixed, p.isFixed = num, true
				}
			}
		}
	}
	b.finish()
	return b.m, nil
}

// Mapping is a compiled MappingConfig. It is safe for concurrent use.
type Mapping struct {
	fields       [NumFields]*tmpl // display name, names, email, ..., address; nil: not mapped
	phones       []compiledPhone
	groups       []*tmpl
	region       string
	requirePhone bool
	fingerprint  Hash

	// attrs are the lower-case attributes read by fast-path templates;
	// fast parts refer to them by index.
	attrs   []string
	anySlow bool
	names   []string // every attribute the templates read, sorted
	all     bool     // a template reads something that cannot be analysed

	// cache holds the positions of attrs in a recently seen Names slice.
	// CSV records share one header slice, so the fast path resolves columns
	// once per file; checking that the names are the cached ones costs one
	// pointer comparison per name, as the strings are the very same.
	cache  atomic.Pointer[posCache]
	misses atomic.Uint64
	// mapPool recycles the maps that slow-path templates execute over.
	mapPool sync.Pool
}

type compiledPhone struct {
	t       *tmpl
	typ     string
	fixed   string // the normalised number of a literal template
	isFixed bool
}

type posCache struct {
	names []string // a copy: a source that reuses its Names buffer cannot change it
	pos   []int32
}

// maxStackAttrs bounds the attributes resolved on the stack for a Names
// slice that is not cached.
const maxStackAttrs = 48

// Apply maps the record r onto *c, which it resets first. A record that
// cannot become a valid contact yields a *RejectError.
//
// Records may share their Names slice (a CSV header) or reuse one buffer
// (LDAP): column positions are cached and checked against the names.
func (m *Mapping) Apply(r *Record, c *Contact) error {
	*c = Contact{}
	var stack [maxStackAttrs]int32
	pos := m.positions(r.Names, stack[:0])
	ev := evaluator{m: m}
	defer ev.release()

	for f := DisplayName; f < NumFields; f++ {
		t := m.fields[f]
		if t == nil {
			continue
		}
		s, err := ev.eval(f, t, r, pos)
		if err != nil {
			return err
		}
		c[f] = s
	}
	if c[DisplayName] == "" {
		return reject(DisplayName, "empty")
	}

	n := 0
	for _, p := range m.phones {
		vf, tf := PhoneField(n)
		num := p.fixed
		if !p.isFixed {
			s, err := ev.eval(vf, p.t, r, pos)
			if err != nil {
				return err
			}
			if num, err = NormalizePhone(s, p.typ, m.region); err != nil {
				return &RejectError{Field: vf, Reason: err.Error()}
			}
		}
		if num == "" {
			continue
		}
		c[vf], c[tf] = num, p.typ
		n++
	}

	if c[Email] != "" && !validEmail(c[Email]) {
		return reject(Email, "invalid email address %s (a bare address such as name@example.com is expected)", quoteValue(c[Email]))
	}
	if c[Phone1] == "" {
		if m.requirePhone {
			return reject(Phone1, "empty (phone number 1 and its type are mandatory)")
		}
		if c[Email] == "" {
			return reject(Phone1, "empty, and email empty (a contact needs a phone number or an email)")
		}
	}

	n = 0
	for _, g := range m.groups {
		f := Group1 + Field(n)
		s, err := ev.eval(f, g, r, pos)
		if err != nil {
			return err
		}
		if s == "" {
			continue
		}
		c[f] = s
		n++
	}
	return nil
}

// positions returns where each fast-path attribute sits in names (-1:
// absent), from the cache when names holds the cached names.
//
// The cache is checked by content, not only by the slice's identity: the
// LDAP source refills one Names buffer for every entry, so an identity
// match would read the columns of an earlier entry.
func (m *Mapping) positions(names []string, stack []int32) []int32 {
	if len(m.attrs) == 0 {
		return nil
	}
	if pc := m.cache.Load(); pc != nil && sameNames(pc.names, names) {
		return pc.pos
	}
	pos := stack
	if len(m.attrs) > cap(pos) {
		pos = make([]int32, 0, len(m.attrs))
	}
	pos = pos[:len(m.attrs)]
	for a, attr := range m.attrs {
		pos[a] = -1
		for i, n := range names {
			if len(n) == len(attr) && (n == attr || strings.EqualFold(n, attr)) {
				pos[a] = int32(i)
				break
			}
		}
	}
	// Re-cache on the first miss and then on every 16th: records whose
	// names keep changing (LDAP entries with different attributes) then
	// cost an allocation only now and then.
	if m.misses.Add(1)%16 == 1 {
		m.cache.Store(&posCache{names: slices.Clone(names), pos: slices.Clone(pos)})
	}
	return pos
}

// sameNames compares two name lists. Go compares strings that share their
// bytes by pointer, so a shared CSV header costs no byte comparison.
func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// PhoneRegion returns the upper-case phone_region ("FR"), or "" when unset:
// the region reconcile's matching passes to NormalizePhone.
func (m *Mapping) PhoneRegion() string { return m.region }

// Attributes returns the lower-case attribute names the templates read, for
// sources that select attributes (LDAP); all is true when a template reads
// the record in a way that cannot be analysed, and every attribute is needed.
func (m *Mapping) Attributes() (names []string, all bool) {
	return append([]string(nil), m.names...), m.all
}
