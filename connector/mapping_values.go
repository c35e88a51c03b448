package connector

import (
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// ErrInvalidPhone is wrapped by the errors of NormalizePhone.
var ErrInvalidPhone = errors.New("invalid phone number")

type phoneError struct{ msg string }

func (e *phoneError) Error() string { return e.msg }
func (e *phoneError) Unwrap() error { return ErrInvalidPhone }

// NormalizePhone returns the form of a phone number that contactsync emits
// and compares: E.164 ("+33123456789") when a region is given or the number
// starts with "+", the trimmed value otherwise. A number of type
// work_extension is an internal extension: it keeps its digits, with an
// optional leading "+", "#" or "*", and loses only spaces, dots and dashes.
// Its errors wrap ErrInvalidPhone and quote the value.
func NormalizePhone(value, typ, region string) (string, error) {
	v := strings.TrimSpace(value)
	// The cases that parse nothing, as normalizePhoneSlow has them.
	if v == "" {
		return "", nil
	}
	if typ == "work_extension" {
		return normalizeExtension(v)
	}
	if region == "" && v[0] != '+' {
		return v, nil
	}
	if num, ok := fastE164(v, region); ok {
		return num, nil
	}
	return normalizePhoneSlow(v, typ, region)
}

// normalizePhoneSlow is the reference implementation of NormalizePhone:
// fastE164 must agree with it (FuzzNormalizePhoneFast), and it handles
// every input fastE164 declines.
func normalizePhoneSlow(value, typ, region string) (string, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return "", nil
	}
	if typ == "work_extension" {
		return normalizeExtension(value)
	}
	if region == "" && !strings.HasPrefix(value, "+") {
		return value, nil
	}
	region = strings.ToUpper(region)
	num, err := phonenumbers.Parse(value, region)
	if err != nil || !phonenumbers.IsValidNumber(num) {
		if region == "" {
			return "", &phoneError{"invalid phone number " + quoteValue(value)}
		}
		return "", &phoneError{"invalid phone number " + quoteValue(value) + " for region " + region}
	}
	if num.GetExtension() != "" {
		// E.164 has no room for it, and dropping it would lose data.
		return "", &phoneError{"phone number " + quoteValue(value) + " carries an extension, which E.164 cannot hold (map the extension to a work_extension phone)"}
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}

func normalizeExtension(value string) (string, error) {
	clean := true
	for i := 0; i < len(value); i++ {
		if c := value[i]; c == ' ' || c == '.' || c == '-' {
			clean = false
			break
		}
	}
	v := value
	if !clean {
		v = strings.Map(func(r rune) rune {
			if r == ' ' || r == '.' || r == '-' {
				return -1
			}
			return r
		}, value)
	}
	digits := v
	if digits != "" && (digits[0] == '+' || digits[0] == '#' || digits[0] == '*') {
		digits = digits[1:]
	}
	if digits == "" {
		return "", &phoneError{"invalid extension " + quoteValue(value) + " (digits expected)"}
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return "", &phoneError{"invalid extension " + quoteValue(value) + " (digits expected, with an optional leading +, # or *)"}
		}
	}
	return v, nil
}

// validEmail accepts a bare address (no display name, no angle brackets)
// that net/mail can parse. Common addresses are recognised without net/mail,
// which allocates.
func validEmail(s string) bool {
	if simpleEmail(s) {
		return true
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s
}

// simpleEmail recognises a subset of what net/mail accepts: a dot-atom local
// part and a domain of letters, digits and hyphens.
func simpleEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return false
	}
	return dotAtom(s[:at], isAtext) && dotAtom(s[at+1:], isDomainChar)
}

func dotAtom(s string, ok func(byte) bool) bool {
	prevDot := true // no leading dot
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if prevDot {
				return false
			}
			prevDot = true
			continue
		}
		if !ok(c) {
			return false
		}
		prevDot = false
	}
	return !prevDot
}

func isDomainChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

func isAtext(c byte) bool {
	return isDomainChar(c) || strings.IndexByte("!#$%&'*+/=?^_`{|}~", c) >= 0
}

// cleanValue trims a rendered value, turns each run of white space that
// holds a tab, CR or LF into one space, and rejects other control
// characters and invalid UTF-8, which Control Hub would mangle.
func cleanValue(f Field, s string) (string, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return cleanSlow(f, s)
		}
	}
	return strings.TrimSpace(s), nil
}

func cleanSlow(f Field, s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", reject(f, "invalid UTF-8 in %s", quoteValue(s))
	}
	breaks := false
	for _, r := range s {
		switch {
		case r == '\t' || r == '\r' || r == '\n':
			breaks = true
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			return "", reject(f, "control character %U in %s", r, quoteValue(s))
		case r >= 0x61c && unicode.Is(unicode.Bidi_Control, r): // U+061C is the first
			// An override makes a name display as another one (spoofing).
			return "", reject(f, "bidirectional control character %U in %s", r, quoteValue(s))
		}
	}
	if !breaks {
		return strings.TrimSpace(s), nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\t' && c != '\r' && c != '\n' {
			out = append(out, c)
			continue
		}
		for len(out) > 0 && out[len(out)-1] == ' ' {
			out = out[:len(out)-1]
		}
		for i+1 < len(s) && isBreakSpace(s[i+1]) {
			i++
		}
		out = append(out, ' ')
	}
	return strings.TrimSpace(string(out)), nil
}

func isBreakSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// quoteValue quotes a value for a rejection reason, cut short when long.
func quoteValue(s string) string {
	const max = 80
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("... (%d bytes)", len(s))
}
