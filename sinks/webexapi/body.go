package webexapi

import (
	"encoding/json"
	"sort"
	"strings"

	"github.com/contactsync/contactsync/connector"
)

// Schema is the value of "schemas": one string, never an array (the API
// answers 400 to an array).
const Schema = "urn:cisco:codev:identity:contact:core:1.0"

// item is a phone number, email or SIP address in a request or an answer.
type item struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Primary bool   `json:"primary,omitempty"`
	// Operation "delete" removes the value; without it an update adds or
	// replaces by value (PATCH semantics, assumed for bulk updates too).
	Operation string `json:"operation,omitempty"`
}

// contactBody is a contact in a bulk request. Pointer fields are left out
// when nil and sent as "" to clear a value.
type contactBody struct {
	ContactID    string    `json:"contactId,omitempty"`
	DisplayName  *string   `json:"displayName,omitempty"`
	FirstName    *string   `json:"firstName,omitempty"`
	LastName     *string   `json:"lastName,omitempty"`
	CompanyName  *string   `json:"companyName,omitempty"`
	Title        *string   `json:"title,omitempty"`
	Address      *string   `json:"address,omitempty"`
	Source       string    `json:"source"`
	PhoneNumbers []item    `json:"phoneNumbers,omitempty"`
	Emails       []item    `json:"emails,omitempty"`
	SIPAddresses []item    `json:"sipAddresses,omitempty"`
	GroupIDs     *[]string `json:"groupIds,omitempty"`
}

type bulkBody struct {
	Schemas  string         `json:"schemas"`
	Contacts []*contactBody `json:"contacts"`
}

type bulkDeleteBody struct {
	Schemas   string   `json:"schemas"`
	ObjectIDs []string `json:"objectIds"`
}

type bulkAnswer struct {
	Contacts       []*apiContact `json:"contacts"`
	FailedContacts []struct {
		ID           string `json:"id"`
		ErrorCode    string `json:"errorCode"`
		ErrorMessage string `json:"errorMessage"`
		StatusCode   int    `json:"statusCode"`
	} `json:"failedContacts"`
	OrgID string `json:"orgId"`
}

type address struct {
	Street  string `json:"street,omitempty"`
	City    string `json:"city,omitempty"`
	State   string `json:"state,omitempty"`
	Country string `json:"country,omitempty"`
	ZipCode string `json:"zipCode,omitempty"`
}

// apiContact is a contact as the API returns it.
type apiContact struct {
	ContactID    string   `json:"contactId"`
	DisplayName  string   `json:"displayName"`
	FirstName    string   `json:"firstName"`
	LastName     string   `json:"lastName"`
	CompanyName  string   `json:"companyName"`
	Title        string   `json:"title"`
	Address      string   `json:"address"`
	AddressInfo  *address `json:"addressInfo"`
	Source       string   `json:"source"`
	PhoneNumbers []item   `json:"phoneNumbers"`
	Emails       []item   `json:"emails"`
	SIPAddresses []item   `json:"sipAddresses"`
	GroupIDs     []string `json:"groupIds"`
}

func strp(s string) *string { return &s }

// setIf returns a pointer to v when it is set, or "" when only old was set
// (the field is cleared), or nil to leave the field out.
func setIf(v, old string) *string {
	switch {
	case v != "":
		return strp(v)
	case old != "":
		return strp("")
	}
	return nil
}

func encodeAddress(c *connector.Contact) string {
	a := address{Street: c[connector.AddressStreet], City: c[connector.AddressCity], State: c[connector.AddressState],
		Country: c[connector.AddressCountry], ZipCode: c[connector.AddressZip]}
	if a == (address{}) {
		return ""
	}
	b, _ := json.Marshal(a) // a struct of strings always encodes
	return string(b)
}

// buildBody makes the bulk item that turns old into c. For a create, old is
// nil and uuid empty. Updates resend every set value (so that a value edited
// by hand in Control Hub is put back), clear the emptied ones, and delete
// the phone numbers, email and SIP address that are gone: the API merges
// these lists rather than replacing them.
func buildBody(uuid string, c, old *connector.Contact) *contactBody {
	var none connector.Contact
	if old == nil {
		old = &none
	}
	b := &contactBody{
		ContactID:   uuid,
		Source:      "CH",
		DisplayName: setIf(c[connector.DisplayName], old[connector.DisplayName]),
		FirstName:   setIf(c[connector.FirstName], old[connector.FirstName]),
		LastName:    setIf(c[connector.LastName], old[connector.LastName]),
		CompanyName: setIf(c[connector.CompanyName], old[connector.CompanyName]),
		Title:       setIf(c[connector.Title], old[connector.Title]),
		Address:     setIf(encodeAddress(c), encodeAddress(old)),
	}
	newPhones := map[string]bool{}
	for i, p := range c.Phones() {
		newPhones[p[0]] = true
		b.PhoneNumbers = append(b.PhoneNumbers, item{Value: p[0], Type: strings.ToLower(p[1]), Primary: i == 0})
	}
	for _, p := range old.Phones() {
		if !newPhones[p[0]] {
			b.PhoneNumbers = append(b.PhoneNumbers, item{Value: p[0], Operation: "delete"})
		}
	}
	b.Emails = oneValue(c[connector.Email], old[connector.Email], "work")
	b.SIPAddresses = oneValue(c[connector.SIPURI], old[connector.SIPURI], "enterprise")
	groups, oldGroups := c.Groups(), old.Groups()
	if len(groups) > 0 || len(oldGroups) > 0 {
		if groups == nil {
			groups = []string{}
		}
		b.GroupIDs = &groups
	}
	return b
}

func oneValue(v, old, typ string) []item {
	var out []item
	if v != "" {
		out = append(out, item{Value: v, Type: typ, Primary: true})
	}
	if old != "" && !strings.EqualFold(old, v) {
		out = append(out, item{Value: old, Operation: "delete"})
	}
	return out
}

// toContact reads an answer into a connector.Contact. Enum casing differs
// between answers (WORK, work): types are lower-cased. The primary phone
// comes first; phones beyond five, and extra emails and SIP addresses, have
// no place in the Control Hub layout and are left out.
func (a *apiContact) toContact() connector.Contact {
	var c connector.Contact
	c[connector.DisplayName] = a.DisplayName
	c[connector.FirstName] = a.FirstName
	c[connector.LastName] = a.LastName
	c[connector.CompanyName] = a.CompanyName
	c[connector.Title] = a.Title
	phones := primaryFirst(a.PhoneNumbers)
	for i := 0; i < len(phones) && i < connector.MaxPhones; i++ {
		v, t := connector.PhoneField(i)
		c[v], c[t] = phones[i].Value, strings.ToLower(phones[i].Type)
	}
	if e := primaryFirst(a.Emails); len(e) > 0 {
		c[connector.Email] = e[0].Value
	}
	if s := primaryFirst(a.SIPAddresses); len(s) > 0 {
		c[connector.SIPURI] = s[0].Value
	}
	ad := a.AddressInfo
	if ad == nil && a.Address != "" {
		var parsed address
		if strings.HasPrefix(strings.TrimSpace(a.Address), "{") && json.Unmarshal([]byte(a.Address), &parsed) == nil {
			ad = &parsed
		} else {
			ad = &address{Street: a.Address} // free text
		}
	}
	if ad != nil {
		c[connector.AddressStreet], c[connector.AddressCity], c[connector.AddressState] = ad.Street, ad.City, ad.State
		c[connector.AddressCountry], c[connector.AddressZip] = ad.Country, ad.ZipCode
	}
	for i, g := range a.GroupIDs {
		if i >= connector.MaxGroups {
			break
		}
		c[connector.Group1+connector.Field(i)] = g
	}
	return c
}

func primaryFirst(items []item) []item {
	out := append([]item(nil), items...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Primary && !out[j].Primary })
	return out
}
