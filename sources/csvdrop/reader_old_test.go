package csvdrop

// The reader as it was before the hand-written parser and key set: the
// reference of FuzzReaderMatchesOld. It is encoding/csv over
// golang.org/x/text's transform.Reader, with a map of cloned keys.

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
	"unicode/utf8"

	"github.com/contactsync/contactsync/connector"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

type oldTextDecoder struct {
	mode     int
	explicit bool // the encoding was configured, not guessed
	charmap  transform.Transformer
	lines    int // newlines in the bytes consumed so far
}

const (
	oldModeUndecided = iota
	oldModeUTF8
	oldModeCharmap
)

func (d *oldTextDecoder) Reset() {}

func (d *oldTextDecoder) Transform(dst, src []byte, atEOF bool) (nDst, nSrc int, err error) {
	switch d.mode {
	case oldModeCharmap:
		nDst, nSrc, err = d.charmap.Transform(dst, src, atEOF)
		d.lines += bytes.Count(src[:nSrc], newline)
		return nDst, nSrc, err
	case oldModeUndecided:
		n := min(len(dst), len(src))
		i := 0
		for i < n && src[i] < utf8.RuneSelf {
			i++
		}
		copy(dst, src[:i])
		d.lines += bytes.Count(src[:i], newline)
		if i == len(src) {
			return i, i, nil
		}
		if i == n {
			return i, i, transform.ErrShortDst
		}
		if !atEOF && !utf8.FullRune(src[i:]) {
			return i, i, transform.ErrShortSrc
		}
		if r, size := utf8.DecodeRune(src[i:]); r == utf8.RuneError && size <= 1 {
			d.mode = oldModeCharmap
			d.charmap = charmap.Windows1252.NewDecoder()
		} else {
			d.mode = oldModeUTF8
		}
		nd, ns, err := d.Transform(dst[i:], src[i:], atEOF)
		return i + nd, i + ns, err
	}
	return d.transformUTF8(dst, src, atEOF)
}

// transformUTF8 copies the longest valid UTF-8 prefix that fits in dst.
func (d *oldTextDecoder) transformUTF8(dst, src []byte, atEOF bool) (int, int, error) {
	n := min(len(dst), len(src))
	chunk := src[:n]
	// Hold back a rune cut by the end of the chunk: the next call completes it.
	if cut := oldIncompleteTail(chunk); cut > 0 && !(atEOF && n == len(src)) {
		chunk = chunk[:n-cut]
	}
	valid := len(chunk)
	if !utf8.Valid(chunk) {
		valid = 0
		for valid < len(chunk) {
			r, size := utf8.DecodeRune(chunk[valid:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			valid += size
		}
	}
	copy(dst, chunk[:valid])
	d.lines += bytes.Count(chunk[:valid], newline)
	switch {
	case valid < len(chunk):
		return valid, valid, d.invalid(chunk[valid])
	case n < len(src):
		return valid, valid, transform.ErrShortDst
	case valid < len(src):
		return valid, valid, transform.ErrShortSrc
	}
	return valid, valid, nil
}

func (d *oldTextDecoder) invalid(b byte) error {
	hint := "earlier lines were read as UTF-8, so the file mixes encodings; set encoding: windows-1252 to read it all as Windows-1252"
	if d.explicit {
		hint = "if the file is not UTF-8, set encoding: auto or windows-1252"
	}
	return &decodeError{line: d.lines + 1, msg: fmt.Sprintf("invalid UTF-8 byte 0x%02X: %s", b, hint)}
}

// oldIncompleteTail returns the length of a UTF-8 sequence cut short at the end
// of b, or 0.
func oldIncompleteTail(b []byte) int {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			return 0
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[len(b)-i:]) {
				return 0
			}
			return i
		}
	}
	return 0
}

func oldNewTextReader(raw *bufio.Reader, encoding string) (io.Reader, error) {
	head, _ := raw.Peek(3)
	utf8BOM := bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF})
	utf16BOM := bytes.HasPrefix(head, []byte{0xFF, 0xFE}) || bytes.HasPrefix(head, []byte{0xFE, 0xFF})
	switch encoding {
	case encAuto, "":
		switch {
		case utf8BOM:
			_, _ = raw.Discard(3)
			return transform.NewReader(raw, &oldTextDecoder{mode: oldModeUTF8}), nil
		case utf16BOM:
			return oldUTF16Reader(raw), nil
		}
		return transform.NewReader(raw, &oldTextDecoder{}), nil
	case encUTF8:
		if utf8BOM {
			_, _ = raw.Discard(3)
		}
		return transform.NewReader(raw, &oldTextDecoder{mode: oldModeUTF8, explicit: true}), nil
	case encCP1252:
		return transform.NewReader(raw, &oldTextDecoder{mode: oldModeCharmap, explicit: true, charmap: charmap.Windows1252.NewDecoder()}), nil
	case encLatin1:
		return transform.NewReader(raw, &oldTextDecoder{mode: oldModeCharmap, explicit: true, charmap: charmap.ISO8859_1.NewDecoder()}), nil
	case encUTF16:
		return oldUTF16Reader(raw), nil
	}
	return nil, fmt.Errorf("unknown encoding %q", encoding)
}

type oldRecordGuard struct {
	r         io.Reader
	delivered int64
	offset    func() int64 // where the last record returned ended
}

func (g *oldRecordGuard) Read(p []byte) (int, error) {
	if g.offset != nil && g.delivered-g.offset() > maxRecordBytes {
		return 0, errRecordTooLong
	}
	n, err := g.r.Read(p)
	g.delivered += int64(n)
	return n, err
}

type oldCSVFile struct {
	name   string // base name, for messages and origins
	cr     *csv.Reader
	header []string // as written, trimmed
	names  []string // lower-cased, shared by every record of the file
	keyIdx int
	// lastLine is the physical line the last record returned ended on.
	lastLine int
	// end is the input offset of that record's end. encoding/csv advances
	// its own offset line by line, even inside a quoted field.
	end int64
}

// oldOpenCSV decodes r and reads its header. Every error names the file and
// a line.
func oldOpenCSV(name string, r io.Reader, opt *readOptions) (*oldCSVFile, error) {
	f := &oldCSVFile{name: name}
	dec, err := oldNewTextReader(bufio.NewReaderSize(r, bufferSize), opt.encoding)
	if err != nil {
		return nil, f.errorf(1, "%w", err)
	}
	guard := &oldRecordGuard{r: dec}
	text := bufio.NewReaderSize(guard, bufferSize)
	comma := opt.delimiter
	if comma == 0 {
		comma = sniffDelimiter(text)
	}
	f.cr = csv.NewReader(text)
	f.cr.Comma = comma
	f.cr.ReuseRecord = true
	guard.offset = func() int64 { return f.end }

	head, err := f.read()
	if err == io.EOF {
		return nil, f.errorf(1, "the file is empty: no header line")
	}
	if err != nil {
		return nil, err
	}
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

// read returns the next record, with errors placed in the file.
func (f *oldCSVFile) read() ([]string, error) {
	row, err := f.cr.Read()
	if err == nil {
		last := len(row) - 1
		line, _ := f.cr.FieldPos(last)
		f.lastLine = line + strings.Count(row[last], "\n")
		f.end = f.cr.InputOffset()
		return row, nil
	}
	if err == io.EOF {
		return nil, err
	}
	var pe *csv.ParseError
	if de, ok := isDecodeError(err); ok {
		return nil, f.errorf(de.line, "%w", err)
	}
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return nil, f.errorf(pe.StartLine, "%d fields where the header has %d: %w", len(row), len(f.names), pe.Err)
		}
		if pe.Line != pe.StartLine {
			return nil, f.errorf(pe.StartLine, "%w (the record starts on line %d; the error is on line %d, column %d)", pe.Err, pe.StartLine, pe.Line, pe.Column)
		}
		return nil, f.errorf(pe.Line, "%w (column %d)", pe.Err, pe.Column)
	}
	return nil, f.errorf(f.lastLine+1, "%w", err)
}

func oldReadFile(ctx context.Context, name string, r io.Reader, opt *readOptions, limit int, emit connector.Emitter) (fileStats, error) {
	var st fileStats
	f, err := oldOpenCSV(name, r, opt)
	if err != nil {
		return st, err
	}
	// The first line of each key, to find duplicates in the one pass; keys
	// are cloned so the map does not pin every row's memory.
	seen := make(map[string]int32)
	var dups map[string][]int
	rec := connector.Record{Names: f.names}
	originBuf := make([]byte, 0, len(name)+12)
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return st, f.errorf(f.lastLine, "%w", err)
			}
		}
		row, err := f.read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, err
		}
		line, _ := f.cr.FieldPos(0)
		if allEmpty(row) {
			st.blank++
			continue
		}
		key := strings.TrimSpace(row[f.keyIdx])
		originBuf = strconv.AppendInt(append(append(originBuf[:0], name...), ':'), int64(line), 10)
		origin := string(originBuf)
		if key == "" {
			st.rejected++
			if err := emit.Reject("", origin, fmt.Sprintf("empty key in column %q", f.header[f.keyIdx])); err != nil {
				return st, f.errorf(line, "%w", err)
			}
			continue
		}
		if r, ok := invisibleRune(key); ok {
			// Reject under the key it looks like, so that the stored contact
			// of that key is neither deleted nor duplicated.
			st.rejected++
			reason := fmt.Sprintf("key %q in column %q holds the invisible character %U (a byte order mark from concatenated files?)", key, f.header[f.keyIdx], r)
			if err := emit.Reject(visibleKey(key), origin, reason); err != nil {
				return st, f.errorf(line, "%w", err)
			}
			continue
		}
		if first, ok := seen[key]; ok {
			if dups == nil {
				dups = make(map[string][]int)
			}
			if dups[key] == nil {
				dups[key] = []int{int(first)}
			}
			dups[key] = append(dups[key], line)
			continue
		}
		seen[strings.Clone(key)] = int32(line)
		rec.Key, rec.Values, rec.Origin = key, row, origin
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

func (f *oldCSVFile) errorf(line int, format string, args ...any) error {
	return fmt.Errorf("csvdrop: %s line %d: %w", f.name, line, fmt.Errorf(format, args...))
}

func oldUTF16Reader(raw io.Reader) io.Reader {
	return transform.NewReader(raw, unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewDecoder())
}

// allEmpty reports a row of empty fields.
func allEmpty(row []string) bool {
	for _, v := range row {
		if strings.TrimSpace(v) != "" {
			return false
		}
	}
	return true
}
