package csvdrop

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// Encodings and delimiters a Config may name.
const (
	encAuto    = "auto"
	encUTF8    = "utf-8"
	encCP1252  = "windows-1252"
	encLatin1  = "iso-8859-1"
	encUTF16   = "utf-16"
	delimAuto  = "auto"
	delimTab   = "tab"
	bufferSize = 64 << 10
)

// maxRecordBytes bounds one record. An unterminated quote would otherwise
// make the parser buffer the rest of a 150 MB file as one field.
const maxRecordBytes = 1 << 20

// decodeError is an undecodable byte, with the physical line it is on.
type decodeError struct {
	line int
	msg  string
}

func (e *decodeError) Error() string { return e.msg }

// errRecordTooLong is returned by the line reader once a record grows past
// maxRecordBytes.
var errRecordTooLong = fmt.Errorf("record longer than %d bytes (an unterminated quote?)", maxRecordBytes)

// textDecoder turns the bytes of a file into UTF-8, counting newlines so
// that an undecodable byte is reported with its line.
//
// In auto mode a file without a BOM starts undecided: ASCII passes through,
// and the first non-ASCII byte decides. If it begins a valid UTF-8 sequence
// the file is UTF-8 from then on, and a later invalid sequence fails the
// read naming its line (a file mixing encodings is corrupt, and guessing per
// line would silently mangle names). Otherwise the file is Windows-1252,
// which decodes every byte. This needs no look-ahead beyond one rune, so a
// 150 MB file is never held in memory, and a file whose first accent is on
// row 900,000 is still decoded right.
type textDecoder struct {
	mode     int
	explicit bool // the encoding was configured, not guessed
	charmap  *byteTable
	lines    int // newlines in the bytes consumed so far (until the mode is charmap, which never fails)
}

// byteTable is a single-byte charmap of golang.org/x/text as a table of
// UTF-8 sequences: its Transform decodes byte by byte through an interface,
// while a CRM export is mostly ASCII, which the table path copies eight
// bytes at a time.
type byteTable [256]struct {
	n uint8
	b [utf8.UTFMax]byte
}

func newByteTable(cm *charmap.Charmap) *byteTable {
	t := new(byteTable)
	for c := range 256 {
		n := utf8.EncodeRune(t[c].b[:], cm.DecodeByte(byte(c)))
		t[c].n = uint8(n)
	}
	return t
}

var (
	cp1252Table = sync.OnceValue(func() *byteTable { return newByteTable(charmap.Windows1252) })
	latin1Table = sync.OnceValue(func() *byteTable { return newByteTable(charmap.ISO8859_1) })
)

const highBits = 0x8080808080808080

// asciiPrefix returns how many leading bytes of src are ASCII, at most
// len(dst), and copies them into dst.
func asciiPrefix(dst, src []byte) int {
	n := min(len(dst), len(src))
	i := 0
	for ; i+8 <= n; i += 8 {
		w := binary.LittleEndian.Uint64(src[i:])
		if w&highBits != 0 {
			break
		}
		binary.LittleEndian.PutUint64(dst[i:], w)
	}
	for ; i < n && src[i] < utf8.RuneSelf; i++ {
		dst[i] = src[i]
	}
	return i
}

// transformCharmap decodes a single-byte charset; it never fails.
func (d *textDecoder) transformCharmap(dst, src []byte) (nDst, nSrc int, err error) {
	t := d.charmap
	for nSrc < len(src) {
		if src[nSrc] < utf8.RuneSelf {
			n := asciiPrefix(dst[nDst:], src[nSrc:])
			if n == 0 {
				return nDst, nSrc, transform.ErrShortDst
			}
			nDst += n
			nSrc += n
			continue
		}
		e := &t[src[nSrc]]
		if nDst+int(e.n) > len(dst) {
			return nDst, nSrc, transform.ErrShortDst
		}
		nDst += copy(dst[nDst:], e.b[:e.n])
		nSrc++
	}
	return nDst, nSrc, nil
}

const (
	modeUndecided = iota
	modeUTF8
	modeCharmap
)

func (d *textDecoder) Reset() {}

func (d *textDecoder) Transform(dst, src []byte, atEOF bool) (nDst, nSrc int, err error) {
	switch d.mode {
	case modeCharmap:
		return d.transformCharmap(dst, src)
	case modeUndecided:
		n := min(len(dst), len(src))
		i := asciiPrefix(dst, src)
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
			d.mode = modeCharmap
			d.charmap = cp1252Table()
		} else {
			d.mode = modeUTF8
		}
		nd, ns, err := d.Transform(dst[i:], src[i:], atEOF)
		return i + nd, i + ns, err
	}
	return d.transformUTF8(dst, src, atEOF)
}

var newline = []byte{'\n'}

// transformUTF8 copies the longest valid UTF-8 prefix that fits in dst.
func (d *textDecoder) transformUTF8(dst, src []byte, atEOF bool) (int, int, error) {
	n := min(len(dst), len(src))
	chunk := src[:n]
	// Hold back a rune cut by the end of the chunk: the next call completes it.
	if cut := incompleteTail(chunk); cut > 0 && !(atEOF && n == len(src)) {
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

func (d *textDecoder) invalid(b byte) error {
	hint := "earlier lines were read as UTF-8, so the file mixes encodings; set encoding: windows-1252 to read it all as Windows-1252"
	if d.explicit {
		hint = "if the file is not UTF-8, set encoding: auto or windows-1252"
	}
	return &decodeError{line: d.lines + 1, msg: fmt.Sprintf("invalid UTF-8 byte 0x%02X: %s", b, hint)}
}

// incompleteTail returns the length of a UTF-8 sequence cut short at the end
// of b, or 0.
func incompleteTail(b []byte) int {
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

// newTextReader returns the UTF-8 text of raw, decoded by encoding, with a
// BOM removed.
func newTextReader(raw *bufio.Reader, encoding string) (io.Reader, error) {
	head, _ := raw.Peek(3)
	utf8BOM := bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF})
	utf16BOM := bytes.HasPrefix(head, []byte{0xFF, 0xFE}) || bytes.HasPrefix(head, []byte{0xFE, 0xFF})
	switch encoding {
	case encAuto, "":
		switch {
		case utf8BOM:
			_, _ = raw.Discard(3)
			return newDecodeReader(raw, &textDecoder{mode: modeUTF8}), nil
		case utf16BOM:
			return utf16Reader(raw), nil
		}
		return newDecodeReader(raw, &textDecoder{}), nil
	case encUTF8:
		if utf8BOM {
			_, _ = raw.Discard(3)
		}
		return newDecodeReader(raw, &textDecoder{mode: modeUTF8, explicit: true}), nil
	case encCP1252:
		return newDecodeReader(raw, &textDecoder{mode: modeCharmap, explicit: true, charmap: cp1252Table()}), nil
	case encLatin1:
		return newDecodeReader(raw, &textDecoder{mode: modeCharmap, explicit: true, charmap: latin1Table()}), nil
	case encUTF16:
		return utf16Reader(raw), nil
	}
	return nil, fmt.Errorf("unknown encoding %q", encoding)
}

// utf16Reader decodes UTF-16, little-endian unless a BOM says otherwise.
// Unpaired surrogates become U+FFFD: the decoder never fails, so there is
// no line to report.
func utf16Reader(raw io.Reader) io.Reader {
	return newDecodeReader(raw, unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewDecoder())
}

// sniffDelimiter picks the delimiter that occurs most often in the header
// line outside quotes: ',' then ';' then tab on a tie, ',' when none does.
func sniffDelimiter(text *bufio.Reader) rune {
	head, _ := text.Peek(text.Size())
	return sniffHead(head)
}

// sniffHead is sniffDelimiter on the first bytes of the text.
func sniffHead(head []byte) rune {
	var commas, semis, tabs int
	inQuote := false
scan:
	for _, c := range head {
		switch {
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '\n':
			break scan
		case c == ',':
			commas++
		case c == ';':
			semis++
		case c == '\t':
			tabs++
		}
	}
	switch {
	case semis > commas && semis >= tabs:
		return ';'
	case tabs > commas && tabs > semis:
		return '\t'
	}
	return ','
}

// delimiterRune maps a configured delimiter to its rune; 0 means auto.
func delimiterRune(d string) (rune, bool) {
	switch d {
	case delimAuto, "":
		return 0, true
	case ",":
		return ',', true
	case ";":
		return ';', true
	case delimTab, "\t":
		return '\t', true
	}
	return 0, false
}

// isDecodeError reports whether err is an undecodable byte, which carries
// its own line: the parser passes reader errors through unplaced.
func isDecodeError(err error) (*decodeError, bool) {
	var de *decodeError
	if errors.As(err, &de) {
		return de, true
	}
	return nil, false
}
