package csvdrop

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"io"
	"math/bits"
	"strings"
)

// The CSV parser: encoding/csv's rules (RFC 4180, LazyQuotes and
// TrimLeadingSpace off, the field count set by the header) and its errors,
// line for line and column for column, over a large buffer of decoded text.
// A record is left as bytes (fields as offsets) so that the reader makes
// one string of a row and its origin, and blank rows cost nothing.

// textBufferSize is the decoded text read at a time.
const textBufferSize = 256 << 10

// lineReader hands out lines of the text, as bufio.Reader.ReadSlice('\n')
// does, from a buffer that grows for long lines.
type lineReader struct {
	r          io.Reader
	buf        []byte
	start, end int   // unread bytes
	off        int64 // input offset of buf[0]
	mark       int64 // input offset where the current record starts
	err        error // sticky, returned once the buffered bytes are used
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: r, buf: make([]byte, textBufferSize)}
}

// fill reads more text, after moving the unread bytes to the front and
// growing the buffer if they fill it. Past maxRecordBytes of one record it
// fails instead, so that an unterminated quote is not read to the end of a
// huge file.
func (l *lineReader) fill() {
	if l.start > 0 {
		n := copy(l.buf, l.buf[l.start:l.end])
		l.off += int64(l.start)
		l.start, l.end = 0, n
	}
	if l.off+int64(l.end)-l.mark > maxRecordBytes {
		l.err = errRecordTooLong
		return
	}
	if len(l.buf)-l.end < textBufferSize/4 {
		l.buf = append(l.buf, make([]byte, len(l.buf))...)
	}
	for range 100 {
		n, err := l.r.Read(l.buf[l.end:])
		l.end += n
		if err != nil {
			l.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	l.err = io.ErrNoProgress
}

// peek returns up to n bytes without consuming them.
func (l *lineReader) peek(n int) []byte {
	for l.end-l.start < n && l.err == nil {
		l.fill()
	}
	return l.buf[l.start:min(l.end, l.start+n)]
}

// readSlice returns the next line with its '\n', or the rest of the text
// and the error that ended it. The slice is valid until the next call.
func (l *lineReader) readSlice() ([]byte, error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(l.buf[l.start+scanned:l.end], '\n'); i >= 0 {
			line := l.buf[l.start : l.start+scanned+i+1]
			l.start += scanned + i + 1
			return line, nil
		}
		if l.err != nil {
			line := l.buf[l.start:l.end]
			l.start = l.end
			return line, l.err
		}
		scanned = l.end - l.start
		l.fill()
	}
}

// markRecord notes that a record starts at the next unread byte.
func (l *lineReader) markRecord() { l.mark = l.off + int64(l.start) }

// parser reads records. After a successful next, rec holds the record's
// bytes and ends the end of each field in rec; field i is
// rec[starts[i]:ends[i]].
type parser struct {
	in      *lineReader
	comma   byte
	numLine int // lines read
	nfields int // fields per record, set by the first record
	// Of the last record:
	rec       []byte
	starts    []int
	ends      []int
	recLine   int    // the line it starts on
	lastLine  int    // the line it ends on
	recordBuf []byte // the unquoted record, when it is not its line
}

// readLine is encoding/csv's: CRLF becomes LF, and a CR before the end of
// the text is dropped.
func (p *parser) readLine() ([]byte, error) {
	line, err := p.in.readSlice()
	n := len(line)
	if n > 0 && err == io.EOF {
		err = nil
		if line[n-1] == '\r' {
			line = line[:n-1]
		}
	}
	p.numLine++
	if n := len(line); n >= 2 && line[n-2] == '\r' && line[n-1] == '\n' {
		line[n-2] = '\n'
		line = line[:n-1]
	}
	return line, err
}

func lengthNL(b []byte) int {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		return 1
	}
	return 0
}

// next reads the next record. It returns io.EOF at the end, a
// *csv.ParseError, or a read error (a decodeError, errRecordTooLong).
// On an error, len(p.ends) is the number of fields read.
func (p *parser) next() error {
	p.in.markRecord()
	var line []byte
	var errRead error
	for errRead == nil {
		line, errRead = p.readLine()
		if errRead == nil && len(line) == lengthNL(line) {
			line = nil
			p.in.markRecord()
			continue // skip empty lines
		}
		break
	}
	if errRead == io.EOF {
		return errRead
	}
	p.recLine = p.numLine
	if errRead == nil && p.splitSimple(line) {
		p.lastLine = p.recLine
		return p.checkCount(nil)
	}
	return p.parseRecord(line, errRead)
}

// splitSimple splits a line whose fields need no unquoting: unquoted ones
// without a quote, quoted ones without a doubled quote or a line break. The
// record is then the line itself (the quotes stay around their fields).
// It reports false for any other line, which parseRecord then reads.
//
// It visits only the delimiters and quotes of the line, found eight bytes
// at a time: fields are short, and a call to bytes.IndexByte per field and
// per quote check cost more than the scan itself.
func (p *parser) splitSimple(line []byte) bool {
	content := line[:len(line)-lengthNL(line)]
	p.starts, p.ends = p.starts[:0], p.ends[:0]
	start := 0      // of the current field
	quoted := false // inside an open quoted field
	closed := -1    // the closing quote of the current field, if quoted
	commas := uint64(p.comma) * lowBits
	var tail [8]byte
	for i := 0; i < len(content); i += 8 {
		var w uint64
		if i+8 <= len(content) {
			w = binary.LittleEndian.Uint64(content[i:])
		} else {
			tail = [8]byte{}
			copy(tail[:], content[i:])
			w = binary.LittleEndian.Uint64(tail[:])
		}
		mask := zeroBytes(w^commas) | zeroBytes(w^quotes)
		for mask != 0 {
			k := i + bits.TrailingZeros64(mask)/8
			mask &= mask - 1
			c := content[k]
			switch {
			case quoted:
				if c != '"' {
					continue // a delimiter inside the quotes
				}
				if k+1 < len(content) && content[k+1] != p.comma {
					return false // a doubled quote, or an error
				}
				quoted, closed = false, k
				if k+1 == len(content) {
					p.starts = append(p.starts, start+1)
					p.ends = append(p.ends, k)
					p.rec = content
					return true
				}
			case c == p.comma:
				if closed >= 0 {
					p.starts = append(p.starts, start+1)
					p.ends = append(p.ends, closed)
				} else {
					p.starts = append(p.starts, start)
					p.ends = append(p.ends, k)
				}
				start, closed = k+1, -1
			case k == start:
				quoted = true
			default:
				return false // a bare quote
			}
		}
	}
	if quoted {
		return false // the field goes on over the next line, or never ends
	}
	p.starts = append(p.starts, start)
	p.ends = append(p.ends, len(content))
	p.rec = content
	return true
}

const (
	lowBits = 0x0101010101010101
	quotes  = '"' * lowBits
	sevens  = 0x7f7f7f7f7f7f7f7f
)

// zeroBytes sets the high bit of each zero byte of w, and only those.
func zeroBytes(w uint64) uint64 {
	return ^((w&sevens + sevens) | w | sevens)
}

// checkCount is encoding/csv's field count rule, after the record: err is
// what the parse returned.
func (p *parser) checkCount(err error) error {
	if p.nfields > 0 {
		if len(p.ends) != p.nfields && err == nil {
			return &csv.ParseError{StartLine: p.recLine, Line: p.recLine, Column: 1, Err: csv.ErrFieldCount}
		}
	} else {
		p.nfields = len(p.ends)
	}
	return err
}

type position struct{ line, col int }

// parseRecord is encoding/csv's readRecord from its first line on.
func (p *parser) parseRecord(line []byte, errRead error) error {
	const quoteLen = 1
	const commaLen = 1
	var err error
	recLine := p.recLine
	p.recordBuf = p.recordBuf[:0]
	p.starts, p.ends = p.starts[:0], p.ends[:0]
	lastFieldLine := recLine
	pos := position{line: p.numLine, col: 1}
	field := func(fieldPos position) {
		p.starts = append(p.starts, p.endOfLast())
		p.ends = append(p.ends, len(p.recordBuf))
		lastFieldLine = fieldPos.line
	}
parseField:
	for {
		if len(line) == 0 || line[0] != '"' {
			i := bytes.IndexByte(line, p.comma)
			f := line
			if i >= 0 {
				f = f[:i]
			} else {
				f = f[:len(f)-lengthNL(f)]
			}
			if j := bytes.IndexByte(f, '"'); j >= 0 {
				err = &csv.ParseError{StartLine: recLine, Line: p.numLine, Column: pos.col + j, Err: csv.ErrBareQuote}
				break parseField
			}
			p.recordBuf = append(p.recordBuf, f...)
			field(pos)
			if i >= 0 {
				line = line[i+commaLen:]
				pos.col += i + commaLen
				continue parseField
			}
			break parseField
		}
		fieldPos := pos
		line = line[quoteLen:]
		pos.col += quoteLen
		for {
			i := bytes.IndexByte(line, '"')
			switch {
			case i >= 0:
				p.recordBuf = append(p.recordBuf, line[:i]...)
				line = line[i+quoteLen:]
				pos.col += i + quoteLen
				switch {
				case len(line) > 0 && line[0] == '"':
					p.recordBuf = append(p.recordBuf, '"')
					line = line[quoteLen:]
					pos.col += quoteLen
				case len(line) > 0 && line[0] == p.comma:
					line = line[commaLen:]
					pos.col += commaLen
					field(fieldPos)
					continue parseField
				case lengthNL(line) == len(line):
					field(fieldPos)
					break parseField
				default:
					err = &csv.ParseError{StartLine: recLine, Line: p.numLine, Column: pos.col - quoteLen, Err: csv.ErrQuote}
					break parseField
				}
			case len(line) > 0:
				p.recordBuf = append(p.recordBuf, line...)
				if errRead != nil {
					break parseField
				}
				pos.col += len(line)
				line, errRead = p.readLine()
				if len(line) > 0 {
					pos.line++
					pos.col = 1
				}
				if errRead == io.EOF {
					errRead = nil
				}
			default:
				if errRead == nil {
					err = &csv.ParseError{StartLine: recLine, Line: pos.line, Column: pos.col, Err: csv.ErrQuote}
					break parseField
				}
				field(fieldPos)
				break parseField
			}
		}
	}
	if err == nil {
		err = errRead
	}
	p.rec = p.recordBuf
	err = p.checkCount(err)
	if err == nil {
		last := p.rec[p.starts[len(p.starts)-1]:p.ends[len(p.ends)-1]]
		p.lastLine = lastFieldLine + bytes.Count(last, newline)
	}
	return err
}

func (p *parser) endOfLast() int {
	if len(p.ends) == 0 {
		return 0
	}
	return p.ends[len(p.ends)-1]
}

// field returns field i of the last record as bytes.
func (p *parser) field(i int) []byte { return p.rec[p.starts[i]:p.ends[i]] }

// allEmpty reports a record of empty fields: spreadsheets save one for
// every row that once held data (";;;;"), and it is no record.
func (p *parser) allEmpty() bool {
	for i := range p.ends {
		if len(bytes.TrimSpace(p.field(i))) != 0 {
			return false
		}
	}
	return true
}

// stringsInto makes one string of the record and tail, puts the fields
// into row (reused when it has the room) and returns them and the tail.
func (p *parser) stringsInto(row []string, tail []byte) ([]string, string) {
	// strings.Builder allocates without zeroing and hands its bytes over.
	var b strings.Builder
	b.Grow(len(p.rec) + len(tail))
	b.Write(p.rec)
	b.Write(tail)
	s := b.String()
	if cap(row) < len(p.ends) {
		row = make([]string, len(p.ends))
	}
	row = row[:len(p.ends)]
	for i := range p.ends {
		row[i] = s[p.starts[i]:p.ends[i]]
	}
	return row, s[len(p.rec):]
}

// strings returns the fields of the record as new strings.
func (p *parser) strings(tail []byte) []string {
	row, _ := p.stringsInto(nil, tail)
	return row
}
