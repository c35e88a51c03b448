package simulator

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Schema is the only value the API accepts in "schemas", as a string.
const Schema = "urn:cisco:codev:identity:contact:core:1.0"

// Item is a phone number, email or SIP address of a contact.
type Item struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Primary bool   `json:"primary,omitempty"`
}

// Address is the structured form of a contact's address ("addressInfo").
type Address struct {
	Street  string `json:"street,omitempty"`
	City    string `json:"city,omitempty"`
	State   string `json:"state,omitempty"`
	Country string `json:"country,omitempty"`
	ZipCode string `json:"zipCode,omitempty"`
}

// Meta carries a contact's timestamps.
type Meta struct {
	Created      time.Time `json:"created"`
	LastModified time.Time `json:"lastModified"`
}

// Contact is a stored organization contact, as the API returns it.
type Contact struct {
	ContactID            string   `json:"contactId"`
	Schemas              string   `json:"schemas"`
	DisplayName          string   `json:"displayName,omitempty"`
	FirstName            string   `json:"firstName,omitempty"`
	LastName             string   `json:"lastName,omitempty"`
	CompanyName          string   `json:"companyName,omitempty"`
	Title                string   `json:"title,omitempty"`
	Address              string   `json:"address,omitempty"`
	AddressInfo          *Address `json:"addressInfo,omitempty"`
	AvatarURL            string   `json:"avatarURL,omitempty"`
	PrimaryContactMethod string   `json:"primaryContactMethod,omitempty"`
	Source               string   `json:"source"`
	OrgID                string   `json:"orgId"`
	Emails               []Item   `json:"emails,omitempty"`
	PhoneNumbers         []Item   `json:"phoneNumbers,omitempty"`
	SIPAddresses         []Item   `json:"sipAddresses,omitempty"`
	GroupIDs             []string `json:"groupIds,omitempty"`
	Meta                 *Meta    `json:"meta,omitempty"`
}

// inItem is an item of a request: PATCH (and, as far as we know, a bulk
// update) may ask to delete a value with operation "delete".
type inItem struct {
	Value     string `json:"value"`
	Type      string `json:"type"`
	Primary   bool   `json:"primary"`
	Operation string `json:"operation"`
}

// inContact is a contact in a request. Pointers tell a field that is absent
// (left as it is by an update) from one set to "" (cleared). Schemas is raw
// so that an array can be told from a string.
type inContact struct {
	ContactID            *string         `json:"contactId"`
	Schemas              json.RawMessage `json:"schemas"`
	DisplayName          *string         `json:"displayName"`
	FirstName            *string         `json:"firstName"`
	LastName             *string         `json:"lastName"`
	CompanyName          *string         `json:"companyName"`
	Title                *string         `json:"title"`
	Address              json.RawMessage `json:"address"`
	AvatarURL            *string         `json:"avatarURL"`
	PrimaryContactMethod *string         `json:"primaryContactMethod"`
	Source               *string         `json:"source"`
	IsMigration          *bool           `json:"isMigration"`
	Emails               []inItem        `json:"emails"`
	PhoneNumbers         []inItem        `json:"phoneNumbers"`
	SIPAddresses         []inItem        `json:"sipAddresses"`
	IMs                  json.RawMessage `json:"ims"`
	GroupIDs             *[]string       `json:"groupIds"`
}

// apiError is a failure with the HTTP status the API answers with.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: 400, msg: fmt.Sprintf(format, args...)}
}

var (
	phoneTypes = set("work", "home", "mobile", "work_extension", "fax", "pager", "other")
	emailTypes = set("work", "home", "room", "other")
	sipTypes   = set("enterprise", "cloud-calling", "personal-room")
	methods    = set("SIPADDRESS", "EMAIL", "PHONE", "IMS")
	uuidRE     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

func set(vs ...string) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[v] = true
	}
	return m
}

// checkSchemas enforces the single string value; the real API rejects an
// array with 400 even when it holds the right URN.
func checkSchemas(raw json.RawMessage, required bool) *apiError {
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			return badRequest("schemas is required")
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return badRequest("schemas must be the string %q", Schema)
	}
	if s != Schema {
		return badRequest("unsupported schemas %q", s)
	}
	return nil
}

// apply validates in and applies it to c: a create when c is new, an update
// (merge) otherwise. Scalars present in in replace; items are added or
// replaced by value unless they carry operation "delete"; groupIds replace.
func apply(c *Contact, in *inContact, create bool) *apiError {
	if err := checkSchemas(in.Schemas, false); err != nil {
		return err
	}
	if in.Source == nil {
		if create {
			// The real API answers 403, not 400, to a create without source.
			return &apiError{status: 403, msg: "source is required; only source CH may be written"}
		}
	} else if *in.Source != "CH" {
		return &apiError{status: 403, msg: fmt.Sprintf("source %q is not writable; only CH", *in.Source)}
	}
	if in.PrimaryContactMethod != nil && *in.PrimaryContactMethod != "" && !methods[strings.ToUpper(*in.PrimaryContactMethod)] {
		return badRequest("primaryContactMethod %q is not one of SIPADDRESS, EMAIL, PHONE, IMS", *in.PrimaryContactMethod)
	}
	if err := checkItems("phoneNumbers", in.PhoneNumbers, phoneTypes); err != nil {
		return err
	}
	if err := checkItems("emails", in.Emails, emailTypes); err != nil {
		return err
	}
	if err := checkItems("sipAddresses", in.SIPAddresses, sipTypes); err != nil {
		return err
	}
	if in.GroupIDs != nil {
		for i, g := range *in.GroupIDs {
			if !uuidRE.MatchString(g) {
				return badRequest("groupIds[%d]: %q is not a group UUID", i, g)
			}
		}
	}
	var addr *string
	if len(in.Address) > 0 && string(in.Address) != "null" {
		var s string
		if err := json.Unmarshal(in.Address, &s); err != nil {
			return badRequest("address must be a string")
		}
		addr = &s
	}

	next := *c
	setStr(&next.DisplayName, in.DisplayName)
	setStr(&next.FirstName, in.FirstName)
	setStr(&next.LastName, in.LastName)
	setStr(&next.CompanyName, in.CompanyName)
	setStr(&next.Title, in.Title)
	setStr(&next.AvatarURL, in.AvatarURL)
	if in.PrimaryContactMethod != nil {
		next.PrimaryContactMethod = strings.ToUpper(*in.PrimaryContactMethod)
	}
	if addr != nil {
		next.Address, next.AddressInfo = *addr, parseAddress(*addr)
	}
	next.PhoneNumbers = mergeItems(c.PhoneNumbers, in.PhoneNumbers, strings.ToLower)
	// Responses spell email types in capitals (WORK), as the live API does.
	next.Emails = mergeItems(c.Emails, in.Emails, strings.ToUpper)
	next.SIPAddresses = mergeItems(c.SIPAddresses, in.SIPAddresses, strings.ToLower)
	if in.GroupIDs != nil {
		next.GroupIDs = append([]string(nil), (*in.GroupIDs)...)
	}
	if len(next.PhoneNumbers)+len(next.Emails)+len(next.SIPAddresses) == 0 {
		return badRequest("at least one of phoneNumbers, emails or sipAddresses is required for source CH")
	}
	next.Source = "CH"
	next.Schemas = Schema
	*c = next
	return nil
}

func setStr(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

func checkItems(field string, items []inItem, types map[string]bool) *apiError {
	for i, it := range items {
		if strings.TrimSpace(it.Value) == "" {
			return badRequest("%s[%d].value is required", field, i)
		}
		if it.Operation != "" && it.Operation != "delete" {
			return badRequest("%s[%d].operation %q: only delete is supported", field, i, it.Operation)
		}
		if it.Operation == "" && !types[strings.ToLower(it.Type)] {
			return badRequest("%s[%d].type %q is not supported", field, i, it.Type)
		}
	}
	return nil
}

// mergeItems adds or replaces items by value and removes those marked for
// deletion: the documented PATCH behaviour that makes a changed number
// accumulate unless the old one is deleted explicitly.
func mergeItems(cur []Item, in []inItem, typeCase func(string) string) []Item {
	out := append([]Item(nil), cur...)
	for _, it := range in {
		idx := -1
		for i := range out {
			if strings.EqualFold(out[i].Value, it.Value) {
				idx = i
				break
			}
		}
		if it.Operation == "delete" {
			if idx >= 0 {
				out = append(out[:idx], out[idx+1:]...)
			}
			continue
		}
		if it.Primary {
			for i := range out {
				out[i].Primary = false
			}
		}
		n := Item{Value: it.Value, Type: typeCase(it.Type), Primary: it.Primary}
		if idx >= 0 {
			out[idx] = n
		} else {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// parseAddress reads the JSON-encoded form of an address; free text has no
// structured form.
func parseAddress(s string) *Address {
	var a Address
	if !strings.HasPrefix(strings.TrimSpace(s), "{") || json.Unmarshal([]byte(s), &a) != nil {
		return nil
	}
	if a == (Address{}) {
		return nil
	}
	return &a
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// matches implements the search keyword: display, first or last name, or an
// email, case-insensitively. The real API's exact matching rule (prefix or
// substring) is unconfirmed; a substring match is the more permissive guess.
func (c *Contact) matches(keyword string) bool {
	if keyword == "" {
		return true
	}
	k := strings.ToLower(keyword)
	for _, v := range []string{c.DisplayName, c.FirstName, c.LastName} {
		if strings.Contains(strings.ToLower(v), k) {
			return true
		}
	}
	for _, e := range c.Emails {
		if strings.Contains(strings.ToLower(e.Value), k) {
			return true
		}
	}
	return false
}

func (c *Contact) inGroups(groups []string) bool {
	if len(groups) == 0 {
		return true
	}
	for _, g := range groups {
		for _, h := range c.GroupIDs {
			if strings.EqualFold(g, h) {
				return true
			}
		}
	}
	return false
}

// probeOf shows a request item to the FailItem hook without validating it.
func probeOf(in *inContact) *Contact {
	c := &Contact{}
	for _, p := range []struct {
		dst *string
		src *string
	}{{&c.ContactID, in.ContactID}, {&c.DisplayName, in.DisplayName}, {&c.FirstName, in.FirstName},
		{&c.LastName, in.LastName}, {&c.Title, in.Title}, {&c.CompanyName, in.CompanyName}} {
		setStr(p.dst, p.src)
	}
	c.PhoneNumbers = mergeItems(nil, in.PhoneNumbers, strings.ToLower)
	c.Emails = mergeItems(nil, in.Emails, strings.ToUpper)
	return c
}
