package csvfile

import (
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// writeBufferSize is the output buffer of a file: one write system call per
// about 1,500 import rows.
const writeBufferSize = 256 << 10

// csvWriter writes rows byte for byte as encoding/csv's Writer does with
// Comma ',' and UseCRLF, which the golden files pin; it appends each row to
// one buffer instead of four bufio calls per field, so a row costs no call
// per field and no allocation. Errors are sticky, as bufio's are.
type csvWriter struct {
	w   io.Writer
	buf []byte
	err error
}

func newCSVWriter(w io.Writer) *csvWriter {
	return &csvWriter{w: w, buf: make([]byte, 0, writeBufferSize)}
}

// writeRaw appends bytes that are not a row (a BOM).
func (c *csvWriter) writeRaw(b []byte) {
	c.buf = append(c.buf, b...)
}

// writeRow appends one row and writes the buffer out once it is nearly full.
func (c *csvWriter) writeRow(rec []string) error {
	if c.err != nil {
		return c.err
	}
	c.buf = appendRow(c.buf, rec)
	if len(c.buf) >= writeBufferSize-writeBufferSize/8 {
		return c.flush()
	}
	return nil
}

// flush writes out what is buffered.
func (c *csvWriter) flush() error {
	if c.err != nil {
		return c.err
	}
	if len(c.buf) > 0 {
		_, c.err = c.w.Write(c.buf)
		c.buf = c.buf[:0]
	}
	return c.err
}

// special marks the bytes that make encoding/csv quote a field.
var special = [256]bool{',': true, '"': true, '\r': true, '\n': true}

// appendRow appends rec as one CSV line, as encoding/csv's Writer.Write
// with UseCRLF: a field is quoted when it holds a comma, quote, CR or LF,
// starts with a space (unicode.IsSpace) or is `\.`; inside quotes a quote is
// doubled, LF becomes CRLF and a CR is dropped.
func appendRow(b []byte, rec []string) []byte {
	for n, field := range rec {
		if n > 0 {
			b = append(b, ',')
		}
		if !needsQuotes(field) {
			b = append(b, field...)
			continue
		}
		b = append(b, '"')
		for len(field) > 0 {
			i := strings.IndexAny(field, "\"\r\n")
			if i < 0 {
				b = append(b, field...)
				break
			}
			b = append(b, field[:i]...)
			switch field[i] {
			case '"':
				b = append(b, '"', '"')
			case '\n':
				b = append(b, '\r', '\n')
			}
			field = field[i+1:]
		}
		b = append(b, '"')
	}
	return append(b, '\r', '\n')
}

func needsQuotes(field string) bool {
	if field == "" {
		return false
	}
	if field == `\.` {
		return true
	}
	for i := 0; i < len(field); i++ {
		if special[field[i]] {
			return true
		}
	}
	if c := field[0]; c < utf8.RuneSelf {
		return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
	}
	r1, _ := utf8.DecodeRuneInString(field)
	return unicode.IsSpace(r1)
}
