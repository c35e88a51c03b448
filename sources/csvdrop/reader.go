package csvdrop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/contactsync/contactsync/connector"
)

// readOptions say how to read the files of one source.
type readOptions struct {
	key       string // the key column, lower-cased and trimmed
	keyLabel  string // the key column as configured, for messages
	delimiter rune   // 0: detect from the header line
	encoding  string
}

// fileStats are the figures of one file read.
type fileStats struct {
	records   int  // handed to Record
	rejected  int  // keys handed to Reject
	blank     int  // rows whose fields are all empty, skipped
	truncated bool // stopped at the limit before the end of the file
}

// csvFile is a CSV file whose header has been read.
type csvFile struct {
	name   string // base name, for messages and origins
	p      parser
	header []string // as written, trimmed
	names  []string // lower-cased, shared by every record of the file
	keyIdx int
	// lastLine is the physical line the last record returned ended on.
	lastLine int
}

// openCSV decodes r and reads its header. Every error names the file and
// a line.
func openCSV(name string, r io.Reader, opt *readOptions) (*csvFile, error) {
	f := &csvFile{name: name}
	dec, err := newTextReader(bufio.NewReaderSize(r, bufferSize), opt.encoding)
	if err != nil {
		return nil, f.errorf(1, "%w", err)
	}
	f.p.in = newLineReader(dec)
	comma := opt.delimiter
	if comma == 0 {
		comma = sniffHead(f.p.in.peek(bufferSize))
	}
	f.p.comma = byte(comma)

	if err := f.read(); err == io.EOF {
		return nil, f.errorf(1, "the file is empty: no header line")
	} else if err != nil {
		return nil, err
	}
	head := f.p.strings(nil)
	line := f.lastLine
	f.header = make([]string, len(head))
	f.names = make([]string, len(head))
	seen := make(map[string]int, len(head))
	f.keyIdx = -1
	if i := crInHeader(head); i >= 0 {
		return nil, f.errorf(line, "column %d of the header holds a carriage return: the lines seem to end with CR alone (classic Mac OS); save the file with CRLF (Windows) or LF (Unix) line endings", i+1)
	}
	for i, h := range head {
		f.header[i] = strings.TrimSpace(h)
		f.names[i] = strings.ToLower(f.header[i])
		if j, dup := seen[f.names[i]]; dup {
			return nil, f.errorf(line, "duplicate column %q in the header (columns %d and %d)", f.header[i], j+1, i+1)
		}
		seen[f.names[i]] = i
		if f.names[i] == opt.key {
			f.keyIdx = i
		}
	}
	if f.keyIdx < 0 {
		hint := ""
		if strings.ContainsRune(strings.Join(head, ""), 0) {
			hint = "; NUL characters: is the file UTF-16 without a BOM? set encoding: utf-16"
		}
		return nil, f.errorf(line, "no key column %q in the header (columns: %s)%s", opt.keyLabel, headerList(f.header), hint)
	}
	return f, nil
}

// read parses the next record into f.p, with errors placed in the file.
func (f *csvFile) read() error {
	err := f.p.next()
	if err == nil {
		f.lastLine = f.p.lastLine
		return nil
	}
	if err == io.EOF {
		return err
	}
	var pe *csv.ParseError
	if de, ok := isDecodeError(err); ok {
		return f.errorf(de.line, "%w", err)
	}
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return f.errorf(pe.StartLine, "%d fields where the header has %d: %w", len(f.p.ends), len(f.names), pe.Err)
		}
		if pe.Line != pe.StartLine {
			return f.errorf(pe.StartLine, "%w (the record starts on line %d; the error is on line %d, column %d)", pe.Err, pe.StartLine, pe.Line, pe.Column)
		}
		return f.errorf(pe.Line, "%w (column %d)", pe.Err, pe.Column)
	}
	return f.errorf(f.lastLine+1, "%w", err)
}

func (f *csvFile) errorf(line int, format string, args ...any) error {
	return fmt.Errorf("csvdrop: %s line %d: %w", f.name, line, fmt.Errorf(format, args...))
}

// headerList renders a header for a message, shortened when long.
func headerList(h []string) string {
	const most = 12
	q := make([]string, 0, most+1)
	for i, s := range h {
		if i == most {
			q = append(q, fmt.Sprintf("and %d more", len(h)-most))
			break
		}
		q = append(q, strconv.Quote(s))
	}
	return strings.Join(q, ", ")
}

// readFile streams one file into emit: one record per row, a rejection per
// empty or duplicate key. limit > 0 stops after that many records. Any
// other problem fails the whole file, and the error names it and the line.
func readFile(ctx context.Context, name string, r io.Reader, opt *readOptions, limit int, emit connector.Emitter) (fileStats, error) {
	var st fileStats
	f, err := openCSV(name, r, opt)
	if err != nil {
		return st, err
	}
	// The first line of each key, to find duplicates in the one pass.
	var seen keySet
	var dups map[string][]int
	rec := connector.Record{Names: f.names}
	row := make([]string, len(f.names))
	originBuf := make([]byte, 0, len(name)+12)
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return st, f.errorf(f.lastLine, "%w", err)
			}
		}
		err := f.read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, err
		}
		line := f.p.recLine
		if f.p.allEmpty() {
			st.blank++
			continue
		}
		keyBytes := bytes.TrimSpace(f.p.field(f.keyIdx))
		originBuf = strconv.AppendInt(append(append(originBuf[:0], name...), ':'), int64(line), 10)
		if len(keyBytes) == 0 {
			st.rejected++
			if err := emit.Reject("", string(originBuf), fmt.Sprintf("empty key in column %q", f.header[f.keyIdx])); err != nil {
				return st, f.errorf(line, "%w", err)
			}
			continue
		}
		if !printableASCII(keyBytes) {
			if r, ok := invisibleRune(string(keyBytes)); ok {
				// Reject under the key it looks like, so that the stored
				// contact of that key is neither deleted nor duplicated.
				key := string(keyBytes)
				st.rejected++
				reason := fmt.Sprintf("key %q in column %q holds the invisible character %U (a byte order mark from concatenated files?)", key, f.header[f.keyIdx], r)
				if err := emit.Reject(visibleKey(key), string(originBuf), reason); err != nil {
					return st, f.errorf(line, "%w", err)
				}
				continue
			}
		}
		if first, dup := seen.add(keyBytes, line); dup {
			key := string(keyBytes)
			if dups == nil {
				dups = make(map[string][]int)
			}
			if dups[key] == nil {
				dups[key] = []int{first}
			}
			dups[key] = append(dups[key], line)
			continue
		}
		// One string holds the row and its origin: the fields and the key
		// are slices of it.
		var origin string
		row, origin = f.p.stringsInto(row, originBuf)
		rec.Key, rec.Values, rec.Origin = strings.TrimSpace(row[f.keyIdx]), row, origin
		if err := emit.Record(&rec); err != nil {
			return st, f.errorf(line, "%w", err)
		}
		st.records++
		if limit > 0 && st.records >= limit {
			st.truncated = true
			break
		}
	}
	// The engine drops a record already handed over when its key is
	// rejected, so the first row of a duplicate goes too.
	keys := make([]string, 0, len(dups))
	for k := range dups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return dups[a][0] - dups[b][0] })
	for _, k := range keys {
		lines := dups[k]
		st.rejected++
		reason := fmt.Sprintf("duplicate key in column %q on lines %s", f.header[f.keyIdx], joinLines(lines))
		if err := emit.Reject(k, name+":"+strconv.Itoa(lines[0]), reason); err != nil {
			return st, f.errorf(lines[0], "%w", err)
		}
	}
	return st, nil
}

// printableASCII reports a key of printable ASCII only, which holds no
// control or format character: the common case skips the rune tables.
func printableASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// invisibleRune returns the first control or format character of a key (a
// BOM in mid-file, a zero-width space): such a key looks like another one,
// and taking it as is would delete that contact and create a twin.
func invisibleRune(key string) (rune, bool) {
	for _, r := range key {
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) {
			return r, true
		}
	}
	return 0, false
}

// visibleKey is key without its control and format characters.
func visibleKey(key string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, key))
}

// joinLines renders 12, 57 and 90.
func joinLines(lines []int) string {
	s := make([]string, len(lines))
	for i, l := range lines {
		s[i] = strconv.Itoa(l)
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// crInHeader returns the first header column that holds a CR, or -1. No
// column name does: a file whose lines end with a CR alone (as classic Mac
// OS wrote them) reads as one header line. A header with NUL characters is
// UTF-16 read as bytes, which the missing key column's error explains.
func crInHeader(head []string) int {
	cr := -1
	for i, h := range head {
		if strings.IndexByte(h, 0) >= 0 {
			return -1
		}
		if cr < 0 && strings.IndexByte(h, '\r') >= 0 {
			cr = i
		}
	}
	return cr
}
