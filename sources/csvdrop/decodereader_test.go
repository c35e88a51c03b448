package csvdrop

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// TestDecodeMatchesXText decodes every byte value, and a long mixed text,
// with read buffers of many sizes: the table decoder and decodeReader must
// give what golang.org/x/text's decoders give through transform.Reader.
func TestDecodeMatchesXText(t *testing.T) {
	var all bytes.Buffer
	for range 3 {
		for c := range 256 {
			all.WriteByte(byte(c))
		}
		all.WriteString(strings.Repeat("plain ASCII; \"quoted\"\r\n", 500))
	}
	utf16 := append([]byte{0xff, 0xfe}, bytes.Repeat([]byte{'a', 0, 0xe9, 0, '\n', 0, 0x3d, 0xd8, 0x00, 0xde}, 3000)...)
	tests := []struct {
		name     string
		encoding string
		in       []byte
		ref      transform.Transformer
	}{
		{"windows-1252", encCP1252, all.Bytes(), charmap.Windows1252.NewDecoder()},
		{"iso-8859-1", encLatin1, all.Bytes(), charmap.ISO8859_1.NewDecoder()},
		{"auto, Windows-1252 from the first accent", encAuto, all.Bytes()[128:], charmap.Windows1252.NewDecoder()},
		{"utf-16", encUTF16, utf16, unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewDecoder()},
	}
	for _, tt := range tests {
		want, err := io.ReadAll(transform.NewReader(bytes.NewReader(tt.in), tt.ref))
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{1, 3, 7, minDirect - 1, minDirect, 4096, 1 << 20} {
			t.Run(tt.name+"/"+strconv.Itoa(size), func(t *testing.T) {
				r, err := newTextReader(newBufReader(bytes.NewReader(tt.in)), tt.encoding)
				if err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				buf := make([]byte, size)
				for {
					n, err := r.Read(buf)
					got.Write(buf[:n])
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Fatalf("decoded %d bytes, x/text %d; first difference at %d", got.Len(), len(want), firstDiff(got.Bytes(), want))
				}
			})
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
