package csvfile

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/contactsync/contactsync/connector"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// ExportRow is one contact of a Control Hub export.
type ExportRow struct {
	// Line is the line of the file where the row starts (1 is the header).
	Line int
	// UUID is the Contact UUID column; it may be empty when the file is a
	// hand-edited copy holding rows not yet imported.
	UUID string
	// Contact holds the columns named like a contact field. Columns the
	// file lacks are empty; phone types are lower-cased.
	Contact connector.Contact
}

// ReadExport reads the Control Hub export at path and calls fn for every
// non-blank row, in file order. Columns are matched by header name, so
// reordered, unknown and extra columns are tolerated, as are a UTF-8 or
// UTF-16 byte order mark, CRLF line ends, Windows-1252 text (detected as
// invalid UTF-8), semicolon or tab delimiters and rows with more or fewer
// fields than the header. Undecodable input, an unterminated quote or a
// header without Display Name or Contact UUID is an error naming the file
// and line. An error returned by fn stops the reading and is returned
// wrapped with the file and line.
func ReadExport(path string, fn func(ExportRow) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("csvfile: export: %w", err)
	}
	defer f.Close()
	return ReadExportFrom(path, f, fn)
}

// ReadExportFrom is ReadExport over an open file; name is used in errors.
// r is read twice: once to tell UTF-8 from Windows-1252, then to parse.
func ReadExportFrom(name string, r io.ReadSeeker, fn func(ExportRow) error) error {
	cr, err := openCSV(r, 0)
	if err != nil {
		return fmt.Errorf("csvfile: export %q: %w", name, err)
	}
	header, err := cr.Read()
	if err != nil {
		return csvError("export", name, 1, err)
	}
	// The header is copied: the reader reuses its record slice.
	header = append([]string(nil), header...)
	uuidCol := -1
	fieldCol := make([]int, len(header)) // connector.Field or -1
	var seen [connector.NumFields]int
	for i, h := range header {
		fieldCol[i] = -1
		if isUUIDColumn(h) {
			if uuidCol >= 0 {
				return fmt.Errorf("csvfile: export %q line 1: columns %d and %d are both %q", name, uuidCol+1, i+1, connector.UUIDColumn)
			}
			uuidCol = i
			continue
		}
		f, ok := connector.FieldByColumn(h)
		if !ok {
			continue
		}
		if seen[f] > 0 {
			return fmt.Errorf("csvfile: export %q line 1: columns %d and %d are both %q", name, seen[f], i+1, f.Column())
		}
		seen[f] = i + 1
		fieldCol[i] = int(f)
	}
	if seen[connector.DisplayName] == 0 {
		return fmt.Errorf("csvfile: export %q line 1: header has no %q column", name, connector.DisplayName.Column())
	}
	if uuidCol < 0 {
		return fmt.Errorf("csvfile: export %q line 1: header has no %q column: a template copy, not a Control Hub export", name, connector.UUIDColumn)
	}
	line := 1
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			// Not a parse error (those carry their line): a read or decode
			// failure, somewhere after the last good row.
			return csvError("export", name, line+1, err)
		}
		line, _ = cr.FieldPos(0)
		if blank(rec) {
			continue
		}
		row := ExportRow{Line: line}
		// Extra fields beyond the header (Cisco's export may add one) are
		// ignored; missing trailing fields are empty.
		for i, v := range rec {
			if i >= len(header) {
				break
			}
			switch f := fieldCol[i]; {
			case i == uuidCol:
				row.UUID = strings.TrimSpace(v)
			case f >= 0:
				row.Contact[f] = v
			}
		}
		for p := 0; p < connector.MaxPhones; p++ {
			_, t := connector.PhoneField(p)
			row.Contact[t] = strings.ToLower(strings.TrimSpace(row.Contact[t]))
		}
		if err := fn(row); err != nil {
			return fmt.Errorf("csvfile: export %q line %d: %w", name, line, err)
		}
	}
}

func blank(rec []string) bool {
	for _, v := range rec {
		if strings.TrimSpace(v) != "" {
			return false
		}
	}
	return true
}

// csvError names the file and the line of a read error.
func csvError(what, name string, line int, err error) error {
	if err == io.EOF {
		return fmt.Errorf("csvfile: %s %q line 1: empty file, no header row", what, name)
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if pe.StartLine != pe.Line {
			return fmt.Errorf("csvfile: %s %q line %d (record starting on line %d): %w", what, name, pe.Line, pe.StartLine, pe.Err)
		}
		return fmt.Errorf("csvfile: %s %q line %d: %w", what, name, pe.Line, pe.Err)
	}
	if line < 1 {
		line = 1
	}
	return fmt.Errorf("csvfile: %s %q near line %d: %w", what, name, line, err)
}

// readHeaderFile reads the first row of a CSV file (header_from).
func readHeaderFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("csvfile: header_from: %w", err)
	}
	defer f.Close()
	// Only the header row is read: a large export given as header_from
	// need not be scanned to the end to tell its encoding.
	cr, err := openCSV(f, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("csvfile: header_from %q: %w", path, err)
	}
	h, err := cr.Read()
	if err != nil {
		return nil, csvError("header_from", path, 1, err)
	}
	return append([]string(nil), h...), nil
}

// openCSV detects the encoding and the delimiter of r and returns a reader
// positioned on the first row. The encoding is told from the first scan
// bytes (0: all of r).
func openCSV(r io.ReadSeeker, scan int64) (*csv.Reader, error) {
	var head [3]byte
	n, err := io.ReadFull(r, head[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("read: %w", err)
	}
	var (
		start int64
		text  io.Reader
	)
	switch {
	case n >= 2 && (head[0] == 0xFF && head[1] == 0xFE || head[0] == 0xFE && head[1] == 0xFF):
		// A spreadsheet's "Unicode text" save: UTF-16 with its BOM.
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		text = transform.NewReader(r, unicode.UTF16(unicode.LittleEndian, unicode.ExpectBOM).NewDecoder())
	default:
		if n == 3 && head == [3]byte{0xEF, 0xBB, 0xBF} {
			start = 3
		}
		if _, err := r.Seek(start, io.SeekStart); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		var src io.Reader = r
		if scan > 0 {
			src = io.LimitReader(r, scan)
		}
		valid, err := validUTF8(src, scan > 0)
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if _, err := r.Seek(start, io.SeekStart); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		text = r
		if !valid {
			// Not UTF-8: an export re-saved by a Windows spreadsheet.
			text = transform.NewReader(r, charmap.Windows1252.NewDecoder())
		}
	}
	br := bufio.NewReaderSize(text, 64<<10)
	cr := csv.NewReader(br)
	cr.Comma = sniffDelimiter(br)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	return cr, nil
}

// sniffDelimiter picks ';' or tab when the first line has no comma but one
// of those: what a French or German spreadsheet writes when it re-saves a
// CSV file.
func sniffDelimiter(br *bufio.Reader) rune {
	b, _ := br.Peek(br.Size())
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		b = b[:i]
	}
	if bytes.IndexByte(b, ',') >= 0 {
		return ','
	}
	if bytes.IndexByte(b, ';') >= 0 {
		return ';'
	}
	if bytes.IndexByte(b, '\t') >= 0 {
		return '\t'
	}
	return ','
}

// validUTF8 reports whether the rest of r is valid UTF-8, without holding
// the whole file in memory. When r is cut short (truncated), a rune cut by
// its end is not held against it.
func validUTF8(r io.Reader, truncated bool) (bool, error) {
	buf := make([]byte, 64<<10)
	carry := 0 // bytes of an incomplete rune kept at buf's start
	for {
		n, err := r.Read(buf[carry:])
		n += carry
		chunk := buf[:n]
		keep := 0
		if err == nil || truncated {
			// Hold back an incomplete rune cut by the chunk boundary.
			for i := n - 1; i >= 0 && i >= n-utf8.UTFMax; i-- {
				if utf8.RuneStart(chunk[i]) {
					if !utf8.FullRune(chunk[i:]) {
						keep = n - i
					}
					break
				}
			}
		}
		if !utf8.Valid(chunk[:n-keep]) {
			return false, nil
		}
		copy(buf, chunk[n-keep:])
		carry = keep
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}
