package connector

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// unmarshalFast decodes a JSON array of exactly NumFields strings, the
// way encoding/json would, or reports false when it cannot be sure to:
// then encoding/json decodes (or rejects) it. The fields without escapes
// are slices of one copy of data.
func unmarshalFast(data []byte) (c Contact, ok bool) {
	s := string(data)
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '[' {
		return c, false
	}
	i++
	for f := range c {
		i = skipSpace(s, i)
		if f > 0 {
			if i >= len(s) || s[i] != ',' {
				return c, false
			}
			i = skipSpace(s, i+1)
		}
		if i >= len(s) || s[i] != '"' {
			return c, false
		}
		start := i + 1
		end := start
		for end < len(s) && s[end] != '"' && s[end] != '\\' && s[end] >= 0x20 {
			end++
		}
		switch {
		case end >= len(s) || s[end] < 0x20:
			return c, false
		case s[end] == '"':
			c[f] = s[start:end]
			i = end + 1
		default:
			v, next, ok := unescape(s, start)
			if !ok {
				return c, false
			}
			c[f], i = v, next
		}
		if !utf8.ValidString(c[f]) {
			// encoding/json turns invalid bytes into U+FFFD.
			return c, false
		}
	}
	i = skipSpace(s, i)
	if i >= len(s) || s[i] != ']' || skipSpace(s, i+1) != len(s) {
		return c, false
	}
	return c, true
}

// unescape reads the string that starts at s[i] (after its opening
// quote) and returns it and the index after its closing quote. It knows
// the escapes Marshal and encoding/json write; a \u escape of a
// surrogate is left to encoding/json.
func unescape(s string, i int) (string, int, bool) {
	var b strings.Builder
	for i < len(s) {
		ch := s[i]
		switch {
		case ch == '"':
			return b.String(), i + 1, true
		case ch < 0x20:
			return "", 0, false
		case ch != '\\':
			b.WriteByte(ch)
			i++
			continue
		}
		if i+1 >= len(s) {
			return "", 0, false
		}
		switch e := s[i+1]; e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if i+6 > len(s) {
				return "", 0, false
			}
			// Four hex digits; ParseUint takes no sign or underscore in base 16.
			u, err := strconv.ParseUint(s[i+2:i+6], 16, 32)
			r := rune(u)
			if err != nil || !utf8.ValidRune(r) { // a surrogate: a pair is encoding/json's to join
				return "", 0, false
			}
			b.WriteRune(r)
			i += 6
			continue
		default:
			return "", 0, false
		}
		i += 2
	}
	return "", 0, false
}

// skipSpace skips JSON's insignificant whitespace.
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}
