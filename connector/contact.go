package connector

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Field names one field of a Webex contact. The order is the Control Hub
// CSV template's, without the Contact UUID column.
type Field int

// The fields of a contact, in Control Hub template order.
const (
	DisplayName Field = iota
	FirstName
	LastName
	Phone1
	Phone1Type
	Phone2
	Phone2Type
	Phone3
	Phone3Type
	Phone4
	Phone4Type
	Phone5
	Phone5Type
	Email
	SIPURI
	Title
	CompanyName
	AddressStreet
	AddressCity
	AddressState
	AddressCountry
	AddressZip
	Group1
	Group2
	Group3
	Group4
	Group5
	NumFields
)

// MaxPhones and MaxGroups are the Control Hub template's limits.
const (
	MaxPhones = 5
	MaxGroups = 5
)

// fieldNames are the names used in the audit and in JSON output.
var fieldNames = [NumFields]string{
	"display_name", "first_name", "last_name",
	"phone_1", "phone_1_type", "phone_2", "phone_2_type", "phone_3", "phone_3_type",
	"phone_4", "phone_4_type", "phone_5", "phone_5_type",
	"email", "sip_uri", "title", "company_name",
	"address_street", "address_city", "address_state", "address_country", "address_zip",
	"group_id_1", "group_id_2", "group_id_3", "group_id_4", "group_id_5",
}

// columnNames are the Control Hub CSV header names of the fields.
var columnNames = [NumFields]string{
	"Display Name", "First Name", "Last Name",
	"Phone Number 1", "Phone Number 1 Type", "Phone Number 2", "Phone Number 2 Type",
	"Phone Number 3", "Phone Number 3 Type", "Phone Number 4", "Phone Number 4 Type",
	"Phone Number 5", "Phone Number 5 Type",
	"Contact Email", "SIP URI", "Title", "Company Name",
	"Address Street", "Address City", "Address State", "Address Country", "Address Zip",
	"Group ID 1", "Group ID 2", "Group ID 3", "Group ID 4", "Group ID 5",
}

// UUIDColumn is the Control Hub CSV column that carries the contact's UUID.
const UUIDColumn = "Contact UUID"

// String returns the field's audit name ("phone_1_type").
func (f Field) String() string {
	if f < 0 || f >= NumFields {
		return "field(" + strconv.Itoa(int(f)) + ")"
	}
	return fieldNames[f]
}

// Column returns the field's Control Hub CSV header name ("Phone Number 1 Type").
func (f Field) Column() string { return columnNames[f] }

// FieldByName finds a field by its audit name.
func FieldByName(name string) (Field, bool) {
	for i, n := range fieldNames {
		if n == name {
			return Field(i), true
		}
	}
	return 0, false
}

// FieldByColumn finds a field by its Control Hub header name, ignoring case
// and surrounding spaces, as exports are parsed by header name.
func FieldByColumn(name string) (Field, bool) {
	name = strings.TrimSpace(name)
	for i, n := range columnNames {
		if strings.EqualFold(n, name) {
			return Field(i), true
		}
	}
	return 0, false
}

// TemplateHeader is the 28-column Control Hub template header.
func TemplateHeader() []string {
	h := make([]string, 0, NumFields+1)
	h = append(h, columnNames[DisplayName], UUIDColumn)
	h = append(h, columnNames[FirstName:]...)
	return h
}

// PhoneField returns the number and type fields of phone i (0-based).
func PhoneField(i int) (value, typ Field) {
	return Phone1 + Field(2*i), Phone1Type + Field(2*i)
}

// PhoneTypes are the phone types the Control Hub CSV import accepts.
var PhoneTypes = []string{"work", "work_extension", "mobile", "home", "other"}

// ValidPhoneType reports whether t is a Control Hub phone type.
func ValidPhoneType(t string) bool {
	for _, p := range PhoneTypes {
		if p == t {
			return true
		}
	}
	return false
}

// Contact is a Webex organization contact as contactsync emits it: every
// field of the Control Hub template but the UUID, as plain strings (empty
// when unset). A fixed array keeps hashing, diffing and CSV writing free of
// allocation.
type Contact [NumFields]string

// Phones returns the contact's non-empty phone numbers with their types.
func (c *Contact) Phones() [][2]string {
	var out [][2]string
	for i := 0; i < MaxPhones; i++ {
		v, t := PhoneField(i)
		if c[v] != "" {
			out = append(out, [2]string{c[v], c[t]})
		}
	}
	return out
}

// Groups returns the contact's non-empty group ids.
func (c *Contact) Groups() []string {
	var out []string
	for f := Group1; f <= Group5; f++ {
		if c[f] != "" {
			out = append(out, c[f])
		}
	}
	return out
}

// Hash is a digest of a contact's content, stored to tell whether a contact
// changed without loading it.
type Hash [16]byte

// IsZero reports whether h is unset.
func (h Hash) IsZero() bool { return h == Hash{} }

// String renders h in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Hash returns the digest of c. Each field is length-prefixed so that no two
// different contacts share an input.
//
// Every record pays for it: the input is written into a stack buffer by
// hand, as strconv.AppendInt and append cost as much as the digest's
// compression itself; appendBinary takes over from the first field that
// does not fit the shortcut.
func (c *Contact) Hash() Hash {
	var buf [512]byte
	n := 0
	for i := range c {
		next := putField(buf[:], n, c[i])
		if next < 0 {
			return hash16(c.appendBinary(buf[:n], i))
		}
		n = next
	}
	return hash16(buf[:n])
}

// putField writes len(s) in decimal, ':' and s into b at n and returns the
// new end, as strconv.AppendInt and two appends would, but only for s
// shorter than 100 bytes that fits: it returns -1 otherwise. Small enough
// to be inlined.
func putField(b []byte, n int, s string) int {
	l := len(s)
	if l >= 100 || len(b)-n < l+3 {
		return -1
	}
	if l >= 10 {
		b[n] = byte('0' + l/10)
		n++
		l %= 10
	}
	b[n] = byte('0' + l)
	b[n+1] = ':'
	return n + 2 + copy(b[n+2:], s)
}

// appendBinary appends the hash input of the fields from the first on.
func (c *Contact) appendBinary(b []byte, first int) []byte {
	for _, v := range c[first:] {
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return b
}

// hash16 is the first half of b's SHA-256 digest.
func hash16(b []byte) Hash {
	sum := sha256.Sum256(b)
	var h Hash
	copy(h[:], sum[:16])
	return h
}

// Marshal encodes c for storage: a JSON array of its fields in template
// order, readable by an auditor with the sqlite3 shell.
func (c *Contact) Marshal() []byte {
	// Sized for the usual contact, which has no character to escape: one
	// allocation, no growth (a million creates each marshal once).
	n := 2 + 3*len(c)
	for _, v := range c {
		n += len(v)
	}
	b := make([]byte, 0, n+n/8)
	b = append(b, '[')
	for i, v := range c {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

// UnmarshalContact decodes what Marshal encoded.
//
// Stored contents are read back by the hundred thousand (every update
// loads the emitted content, reconcile every pending create's), and
// encoding/json took 3-4 µs a contact. unmarshalFast reads what Marshal
// writes; anything else (an escape it does not know, invalid UTF-8, a
// malformed array) goes to encoding/json, which decides.
func UnmarshalContact(data []byte) (Contact, error) {
	if c, ok := unmarshalFast(data); ok {
		return c, nil
	}
	return unmarshalJSON(data)
}

func unmarshalJSON(data []byte) (Contact, error) {
	var c Contact
	var vals []string
	if err := json.Unmarshal(data, &vals); err != nil {
		return c, fmt.Errorf("contact: decode: %w", err)
	}
	if len(vals) != int(NumFields) {
		return c, fmt.Errorf("contact: decode: %d fields, want %d", len(vals), NumFields)
	}
	copy(c[:], vals)
	return c, nil
}

func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !jsonEscaped[ch] {
			continue
		}
		b = append(b, s[start:i]...)
		switch ch {
		case '"', '\\':
			b = append(b, '\\', ch)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[ch>>4], hexDigits[ch&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonEscaped marks the bytes appendJSONString escapes: control
// characters, the quote and backslash, and <, > and & as encoding/json
// does (the stored contents were written by it once).
var jsonEscaped = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = true
	}
	return t
}()

// Diff lists the fields that differ between old and new.
func Diff(old, new *Contact) []Field {
	var out []Field
	for i := range old {
		if old[i] != new[i] {
			out = append(out, Field(i))
		}
	}
	return out
}

// FieldChange is one field's old and new value, as the audit shows it.
type FieldChange struct {
	Field Field
	Old   string
	New   string
}
