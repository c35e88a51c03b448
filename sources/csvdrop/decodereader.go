package csvdrop

import (
	"errors"
	"io"

	"golang.org/x/text/transform"
)

// Buffers of the decoding reader. transform.Reader decodes 4 KB at a time
// into a buffer of its own and copies out; this one decodes 256 KB at a
// time straight into the caller's buffer, which the CSV parser keeps large.
const (
	decodeSrcSize = 256 << 10
	// minDirect: below this, a Read decodes into the staging buffer first,
	// so that a rune never has to be cut to fit.
	minDirect = 64
)

var errInconsistentByteCount = errors.New("csvdrop: decoder consumed part of its input without error")

// decodeReader is transform.Reader with larger buffers and no copy: the
// same order of data and errors (the decoded bytes before the invalid one
// come first, then the error, which then sticks).
type decodeReader struct {
	r      io.Reader
	t      transform.Transformer
	src    []byte
	s0, s1 int
	rerr   error // of r: io.EOF or a read error
	// stage holds decoded bytes for callers with tiny buffers: stage[st0:st1]
	// is still to be handed out.
	stage    [minDirect]byte
	st0, st1 int
	complete bool  // nothing more will be decoded
	err      error // returned once complete and drained
}

func newDecodeReader(r io.Reader, t transform.Transformer) *decodeReader {
	return &decodeReader{r: r, t: t, src: make([]byte, decodeSrcSize)}
}

func (d *decodeReader) Read(p []byte) (int, error) {
	for {
		if d.st0 != d.st1 {
			n := copy(p, d.stage[d.st0:d.st1])
			d.st0 += n
			return n, nil
		}
		if d.complete {
			return 0, d.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		if d.s0 != d.s1 || d.rerr != nil {
			dst := p
			staged := len(p) < minDirect
			if staged {
				dst = d.stage[:]
			}
			nd, ns, err := d.t.Transform(dst, d.src[d.s0:d.s1], d.rerr == io.EOF)
			d.s0 += ns
			switch {
			case err == nil:
				if d.s0 != d.s1 {
					d.rerr = errInconsistentByteCount
				}
				d.complete = d.rerr != nil
			case errors.Is(err, transform.ErrShortDst) && (nd != 0 || ns != 0):
			case errors.Is(err, transform.ErrShortSrc) && d.s1-d.s0 != len(d.src) && d.rerr == nil:
				// Read more below.
			default:
				d.complete = true
				// A read error takes precedence over the decoder's, unless
				// it is the end of the input.
				if d.rerr == nil || d.rerr == io.EOF {
					d.rerr = err
				}
			}
			if d.complete {
				d.err = d.rerr
			}
			if nd > 0 {
				if staged {
					d.st0, d.st1 = 0, nd
					continue
				}
				return nd, nil
			}
			if d.complete {
				continue
			}
		}
		if d.s0 != 0 {
			d.s1 = copy(d.src, d.src[d.s0:d.s1])
			d.s0 = 0
		}
		n, err := d.r.Read(d.src[d.s1:])
		d.s1 += n
		if err != nil && d.rerr == nil {
			d.rerr = err
		}
	}
}
