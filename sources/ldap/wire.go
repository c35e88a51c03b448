package ldap

// The lean LDAPv3 wire client of full pulls. go-ldap decodes every message
// into a generic tree of ber.Packet values on a reader goroutine and hands
// entries over a channel: BenchmarkPull measured 27.7 µs and 402 allocations
// per entry, and the garbage cost as much again in GC. Entries are the whole
// volume of a full pull, so they are decoded here straight from the bytes
// as they sit in the read buffer, on the consumer's goroutine: one string
// per entry, with the DN and values as substrings of it (6 µs and 2
// allocations per entry in the same benchmark, slapd's share included).
// Requests, results and controls are one per page, and go-ldap and
// go-asn1-ber encode and decode them.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/contactsync/contactsync/connector"
	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// BER tags of the LDAPMessage elements read here (RFC 4511, section 4).
const (
	tagInteger          = 0x02
	tagOctetString      = 0x04
	tagEnumerated       = 0x0a
	tagSequence         = 0x30
	tagSet              = 0x31
	tagBindResponse     = 0x61 // [APPLICATION 1]
	tagSearchEntry      = 0x64 // [APPLICATION 4]
	tagSearchDone       = 0x65 // [APPLICATION 5]
	tagSearchReference  = 0x73 // [APPLICATION 19]
	tagExtendedResponse = 0x78 // [APPLICATION 24]
	tagControls         = 0xa0 // [0] in LDAPMessage
)

const (
	// maxMessage bounds one LDAPMessage: an entry with a few photos fits,
	// a corrupt length does not make us allocate gigabytes.
	maxMessage = 64 << 20
	// readBuffer holds typical entries whole, so that they are decoded in
	// place (bufio.Reader.Peek) without a copy.
	readBuffer = 64 << 10
	// maxNames bounds the interned attribute names: a server sends the
	// attributes asked for, or its schema's with "*".
	maxNames = 1024

	oidStartTLS = "1.3.6.1.4.1.1466.20037"
)

var (
	errTruncated  = errors.New("truncated BER element")
	errIndefinite = errors.New("BER indefinite length is not allowed in LDAP")
)

// element reads the BER element that starts at b[i]: its tag and where its
// contents start and end. It never reads past len(b).
func element(b []byte, i int) (tag byte, start, end int, err error) {
	if i < 0 || i+2 > len(b) {
		return 0, 0, 0, errTruncated
	}
	tag = b[i]
	if tag&0x1f == 0x1f {
		return 0, 0, 0, fmt.Errorf("BER tag 0x%02x: multi-byte tags are not used by LDAP", tag)
	}
	n := int(b[i+1])
	i += 2
	if n&0x80 != 0 {
		k := n & 0x7f
		switch {
		case k == 0:
			return 0, 0, 0, errIndefinite
		case k > 4:
			return 0, 0, 0, fmt.Errorf("BER length of %d bytes is too long", k)
		case i+k > len(b):
			return 0, 0, 0, errTruncated
		}
		n = 0
		for _, c := range b[i : i+k] {
			n = n<<8 | int(c)
		}
		i += k
	}
	if n > len(b)-i {
		return 0, 0, 0, errTruncated
	}
	return tag, i, i + n, nil
}

// framer reads one LDAPMessage at a time. A message that fits in the
// reader's buffer is returned in place, valid until the next call.
type framer struct {
	r       *bufio.Reader
	buf     []byte
	pending int // bytes of the previous message still to discard
}

func newFramer(r io.Reader) *framer {
	return &framer{r: bufio.NewReaderSize(r, readBuffer)}
}

// next returns the next whole message. io.EOF means the stream ended
// cleanly between two messages; io.ErrUnexpectedEOF, inside one.
func (f *framer) next() ([]byte, error) {
	f.release()
	if cap(f.buf) > 1<<20 {
		f.buf = nil // one huge entry should not pin its buffer for the rest of the pull
	}
	h, err := f.r.Peek(2)
	if err != nil {
		if len(h) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	total, err := messageSize(h)
	if err != nil {
		return nil, err
	}
	if total == 0 { // a long-form length: its bytes follow
		if h, err = f.r.Peek(2 + int(h[1]&0x7f)); err != nil {
			return nil, unexpectedEOF(err)
		}
		if total, err = messageSize(h); err != nil {
			return nil, err
		}
	}
	if total <= f.r.Size() {
		msg, err := f.r.Peek(total)
		if err != nil {
			return nil, unexpectedEOF(err)
		}
		f.pending = total
		return msg, nil
	}
	if cap(f.buf) < total {
		f.buf = make([]byte, total)
	}
	msg := f.buf[:total]
	if _, err := io.ReadFull(f.r, msg); err != nil {
		return nil, unexpectedEOF(err)
	}
	return msg, nil
}

// release lets go of the message next returned last.
func (f *framer) release() {
	if f.pending > 0 {
		f.r.Discard(f.pending) // always succeeds: the bytes were peeked
		f.pending = 0
	}
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// messageSize reads the header of the LDAPMessage that starts b and
// returns the whole message's size in bytes, or 0 when b is too short to
// hold the header. Both the framer and the read-ahead frame with it.
func messageSize(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	if b[0] != tagSequence {
		return 0, fmt.Errorf("not an LDAP message (tag 0x%02x)", b[0])
	}
	size, head := int(b[1]), 2
	if size&0x80 != 0 {
		k := size & 0x7f
		switch {
		case k == 0:
			return 0, errIndefinite
		case k > 4:
			return 0, fmt.Errorf("LDAP message length of %d bytes is too long", k)
		case len(b) < 2+k:
			return 0, nil
		}
		size = 0
		for _, c := range b[2 : 2+k] {
			size = size<<8 | int(c)
		}
		head += k
	}
	if size > maxMessage {
		return 0, fmt.Errorf("LDAP message of %d bytes is larger than the limit of %d", size, maxMessage)
	}
	return head + size, nil
}

// message is an LDAPMessage split into its parts; the slices point into
// the framer's buffer.
type message struct {
	id       int64
	op       byte   // the protocolOp's tag
	body     []byte // the protocolOp's contents
	controls []byte // the whole [0] Controls element, or nil
}

func parseMessage(msg []byte) (message, error) {
	var m message
	tag, start, end, err := element(msg, 0)
	if err != nil {
		return m, err
	}
	if tag != tagSequence || end != len(msg) {
		return m, errors.New("malformed LDAP message")
	}
	msg = msg[:end]
	tag, is, ie, err := element(msg, start)
	if err != nil {
		return m, err
	}
	if tag != tagInteger || ie == is || ie-is > 4 {
		return m, errors.New("malformed LDAP message ID")
	}
	for _, c := range msg[is:ie] {
		m.id = m.id<<8 | int64(c)
	}
	if msg[is]&0x80 != 0 {
		m.id -= 1 << (8 * (ie - is)) // two's complement
	}
	tag, ops, ope, err := element(msg, ie)
	if err != nil {
		return m, err
	}
	m.op, m.body = tag, msg[ops:ope]
	oe := ope
	if oe < end {
		tag, _, ce, err := element(msg, oe)
		if err != nil {
			return m, err
		}
		if tag == tagControls {
			m.controls = msg[oe:ce]
		}
	}
	return m, nil
}

// ldapResult decodes the LDAPResult fields that start a response's
// contents: resultCode, matchedDN, diagnosticMessage (a referral after
// them is not needed: a referral result is an error here).
func ldapResult(body []byte) (code int, matchedDN, diagnostic string, err error) {
	tag, s, e, err := element(body, 0)
	if err != nil {
		return 0, "", "", err
	}
	if tag != tagEnumerated && tag != tagInteger || e == s || e-s > 4 {
		return 0, "", "", errors.New("malformed LDAP result code")
	}
	for _, c := range body[s:e] {
		code = code<<8 | int(c)
	}
	tag, ms, me, err := element(body, e)
	if err != nil {
		return 0, "", "", err
	}
	tag2, ds, de, err := element(body, me)
	if err != nil {
		return 0, "", "", err
	}
	if tag != tagOctetString || tag2 != tagOctetString {
		return 0, "", "", errors.New("malformed LDAP result")
	}
	return code, string(body[ms:me]), string(body[ds:de]), nil
}

// resultError is the error go-ldap returns for a result code, so that the
// messages (and goldap.IsErrorWithCode) are the same on both paths.
func resultError(body []byte) error {
	code, matched, diag, err := ldapResult(body)
	if err != nil {
		return goldap.NewError(goldap.ErrorNetwork, err)
	}
	if code == 0 {
		return nil
	}
	return &goldap.Error{ResultCode: uint16(code), MatchedDN: matched, Err: errors.New(diag)}
}

// decodeControls decodes a message's controls with go-ldap: they come once
// per page, not per entry.
func decodeControls(b []byte) ([]goldap.Control, error) {
	if b == nil {
		return nil, nil
	}
	pkt, err := ber.DecodePacketErr(b)
	if err != nil {
		return nil, err
	}
	out := make([]goldap.Control, 0, len(pkt.Children))
	for _, child := range pkt.Children {
		c, err := goldap.DecodeControl(child)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// entryDecoder turns SearchResultEntry contents into records, with the
// rules of pull.entry: "dn" first, names lower-cased, first values only,
// repeated names and attributes without values skipped, values rendered
// by renderValue.
type entryDecoder struct {
	key   string            // the key attribute, lower-cased
	names map[string]string // attribute name as sent -> lower-cased
}

func newEntryDecoder(key string) *entryDecoder {
	return &entryDecoder{key: strings.ToLower(key), names: map[string]string{}}
}

func (d *entryDecoder) intern(b []byte) string {
	if n, ok := d.names[string(b)]; ok {
		return n
	}
	n := strings.ToLower(string(b))
	if len(d.names) < maxNames {
		d.names[string(b)] = n
	}
	return n
}

// decode fills rec from body, reusing its slices. hasKey is false when the
// key attribute is missing or its first value is empty; rec.Origin is set
// then too, for the rejection.
func (d *entryDecoder) decode(body []byte, rec *connector.Record) (hasKey bool, err error) {
	// One string for the whole entry: the DN and the values are substrings
	// of it, at the same offsets as in body.
	s := string(body)
	tag, ds, de, err := element(body, 0)
	if err != nil {
		return false, err
	}
	if tag != tagOctetString {
		return false, errors.New("malformed entry: no DN")
	}
	tag, ls, le, err := element(body, de)
	if err != nil {
		return false, err
	}
	if tag != tagSequence || le != len(body) {
		return false, errors.New("malformed entry: no attribute list")
	}
	rec.Key, rec.Origin = "", s[ds:de]
	rec.Names, rec.Values = append(rec.Names[:0], "dn"), append(rec.Values[:0], rec.Origin)
	keySeen := false
	for i := ls; i < le; {
		tag, as, ae, err := element(body[:le], i)
		if err != nil {
			return false, err
		}
		if tag != tagSequence {
			return false, errors.New("malformed entry: attribute is not a sequence")
		}
		i = ae
		a := body[:ae]
		tag, ns, ne, err := element(a, as)
		if err != nil {
			return false, err
		}
		tag2, vs, ve, err := element(a, ne)
		if err != nil {
			return false, err
		}
		if tag != tagOctetString || tag2 != tagSet || ve != ae {
			return false, errors.New("malformed entry: attribute")
		}
		// Every value is checked, not only the first, so that a
		// malformed entry is an error as it is for go-ldap.
		fs, fe, nvals := 0, 0, 0
		for j := vs; j < ve; nvals++ {
			tag, start, end, err := element(a[:ve], j)
			if err != nil {
				return false, err
			}
			if tag != tagOctetString {
				return false, errors.New("malformed entry: attribute value")
			}
			if nvals == 0 {
				fs, fe = start, end
			}
			j = end
		}
		name := d.intern(body[ns:ne])
		isKey := !keySeen && name == d.key
		if isKey {
			keySeen = true
		}
		if nvals == 0 || slices.Contains(rec.Names, name) {
			continue
		}
		v := renderSub(name, body[fs:fe], s[fs:fe])
		rec.Names, rec.Values = append(rec.Names, name), append(rec.Values, v)
		if isKey && fe > fs {
			rec.Key, hasKey = v, true
		}
	}
	return hasKey, nil
}

// renderSub is renderValue of b, which s holds as a string: text is taken
// as it is rather than copied.
func renderSub(name string, b []byte, s string) string {
	if (name == "objectguid" || name == "ms-ds-consistencyguid") && len(b) == 16 {
		return FormatGUID(b)
	}
	if utf8.Valid(b) {
		return s
	}
	return hex.EncodeToString(b)
}

// wireConn is one connection of the lean client. Only one operation is in
// flight at a time; once the search has started, its read-ahead (ra) alone
// reads and asks for the next pages, while close may write the Unbind from
// the consumer's goroutine (net.Conn and tls.Conn allow that).
type wireConn struct {
	nc      net.Conn
	f       *framer
	id      atomic.Int64 // the last message ID sent
	timeout time.Duration
	stop    func() bool // stops closing the connection on the context's end
	ra      *readAhead  // nil until the search starts
}

// idleReader gives every read from the server its own deadline: like the
// watchdog of the go-ldap path, it counts only the time spent waiting for
// the server, never the consumer's.
type idleReader struct {
	c       net.Conn
	timeout time.Duration
	// The receive low-water mark (lowat.go): the read-ahead sets it.
	lowat  func(n int) error
	mark   int  // 0 or 1: none
	noMark bool // the connection cannot have one
	misses int  // reads that waited markWait for the mark
}

func (r *idleReader) Read(p []byte) (int, error) {
	if r.mark > 1 {
		return r.readMarked(p)
	}
	return r.readIdle(p)
}

func (r *idleReader) readIdle(p []byte) (int, error) {
	if err := r.c.SetReadDeadline(time.Now().Add(r.timeout)); err != nil {
		return 0, err
	}
	return r.c.Read(p)
}

// dialWire opens a lean connection as connect opens go-ldap's: same
// dialer, TLS configuration, StartTLS, bind and error messages. The
// context's end closes the connection, which ends any read in progress.
func (s *Source) dialWire(ctx context.Context) (*wireConn, error) {
	pw, tc, err := s.credentials()
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(s.cfg.URL)
	if err != nil {
		return nil, s.connError(goldap.NewError(goldap.ErrorNetwork, err))
	}
	host, port := u.Hostname(), u.Port()
	ldaps := strings.EqualFold(u.Scheme, "ldaps")
	if port == "" {
		port = goldap.DefaultLdapPort
		if ldaps {
			port = goldap.DefaultLdapsPort
		}
	}
	d := &net.Dialer{Timeout: s.cfg.Timeout}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	var nc net.Conn
	if ldaps {
		nc, err = (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	} else {
		nc, err = d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	}
	if err != nil {
		return nil, s.connError(goldap.NewError(goldap.ErrorNetwork, err))
	}
	c := &wireConn{nc: nc, timeout: s.cfg.Timeout}
	c.stop = context.AfterFunc(ctx, func() { nc.Close() })
	c.f = newFramer(&idleReader{c: nc, timeout: s.cfg.Timeout})
	if s.cfg.StartTLS {
		if err := c.startTLS(ctx, tc); err != nil {
			c.close()
			return nil, s.startTLSError(err)
		}
	}
	dn, password := s.cfg.BindDN, ""
	if dn != "" {
		password = pw.Reveal()
	}
	if err := c.bind(dn, password); err != nil {
		c.close()
		return nil, s.bindError(err)
	}
	return c, nil
}

// send writes one request with the next message ID.
func (c *wireConn) send(op *ber.Packet, controls []goldap.Control) (int64, error) {
	return c.sendWithin(op, controls, c.timeout)
}

func (c *wireConn) sendWithin(op *ber.Packet, controls []goldap.Control, timeout time.Duration) (int64, error) {
	return c.sendEncoded(op.Bytes(), controls, timeout)
}

// sendEncoded is send for an operation already encoded: a paged search
// sends the same one for every page, and building it again (filter,
// attribute list) cost about 60 µs while the server waited for it.
func (c *wireConn) sendEncoded(op []byte, controls []goldap.Control, timeout time.Duration) (int64, error) {
	id := c.id.Add(1)
	msg := request(id, op, controls)
	if err := c.nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	_, err := c.nc.Write(msg)
	return id, err
}

// request encodes an LDAPMessage: the message ID, the encoded operation
// and the controls, as asn1-ber would encode the same packet tree.
func request(id int64, op []byte, controls []goldap.Control) []byte {
	idp := ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID").Bytes()
	var ctl []byte
	if len(controls) > 0 {
		cp := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, c := range controls {
			cp.AppendChild(c.Encode())
		}
		ctl = cp.Bytes()
	}
	n := len(idp) + len(op) + len(ctl)
	b := make([]byte, 0, n+6)
	b = append(b, 0x30) // universal, constructed, SEQUENCE
	b = appendLength(b, n)
	b = append(b, idp...)
	b = append(b, op...)
	return append(b, ctl...)
}

// appendLength appends a BER definite length in its shortest form.
func appendLength(b []byte, n int) []byte {
	if n < 0x80 {
		return append(b, byte(n))
	}
	k := 0
	for v := n; v > 0; v >>= 8 {
		k++
	}
	b = append(b, 0x80|byte(k))
	for i := k - 1; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

// response reads the answer to a single-response operation.
func (c *wireConn) response(id int64, op byte) (message, error) {
	msg, err := c.f.next()
	if err != nil {
		return message{}, err
	}
	m, err := parseMessage(msg)
	if err != nil {
		return m, err
	}
	if m.id != id || m.op != op {
		return m, unexpected(m)
	}
	return m, nil
}

// unexpected describes a message that has no place where it came, such as
// a notice of disconnection (message ID 0).
func unexpected(m message) error {
	if m.id == 0 && m.op == tagExtendedResponse {
		if err := resultError(m.body); err != nil {
			return fmt.Errorf("the server ended the connection: %w", err)
		}
		return errors.New("the server ended the connection")
	}
	return fmt.Errorf("unexpected LDAP message (ID %d, operation 0x%02x)", m.id, m.op)
}

func (c *wireConn) startTLS(ctx context.Context, tc *tls.Config) error {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationExtendedRequest, nil, "Start TLS")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oidStartTLS, "TLS Extended Command"))
	id, err := c.send(op, nil)
	if err != nil {
		return goldap.NewError(goldap.ErrorNetwork, err)
	}
	m, err := c.response(id, tagExtendedResponse)
	if err != nil {
		return goldap.NewError(goldap.ErrorNetwork, err)
	}
	if err := resultError(m.body); err != nil {
		return err
	}
	if c.f.release(); c.f.r.Buffered() > 0 {
		return goldap.NewError(goldap.ErrorNetwork, errors.New("data after the StartTLS response"))
	}
	tconn := tls.Client(c.nc, tc)
	hctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := tconn.HandshakeContext(hctx); err != nil {
		return goldap.NewError(goldap.ErrorNetwork, fmt.Errorf("TLS handshake failed (%v)", err))
	}
	c.nc = tconn
	c.f = newFramer(&idleReader{c: tconn, timeout: c.timeout})
	return nil
}

func (c *wireConn) bind(dn, password string) error {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationBindRequest, nil, "Bind Request")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "Version"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "User Name"))
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, password, "Password"))
	id, err := c.send(op, nil)
	if err != nil {
		return goldap.NewError(goldap.ErrorNetwork, err)
	}
	m, err := c.response(id, tagBindResponse)
	if err != nil {
		return goldap.NewError(goldap.ErrorNetwork, err)
	}
	return resultError(m.body)
}

// searchRequest encodes a subtree search of base.
func searchRequest(base, filter string, attrs []string) (*ber.Packet, error) {
	fp, err := goldap.CompileFilter(filter)
	if err != nil {
		return nil, err
	}
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationSearchRequest, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, "Base DN"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(goldap.ScopeWholeSubtree), "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(goldap.NeverDerefAliases), "Deref Aliases"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Size Limit"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Time Limit"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "Types Only"))
	op.AppendChild(fp)
	ap := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range attrs {
		ap.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, "Attribute"))
	}
	op.AppendChild(ap)
	return op, nil
}

// close unbinds (best effort: the server may be gone) and closes. The
// read-ahead is told to stop first; closing the connection ends a read or
// write it is in, and close returns once it has ended.
func (c *wireConn) close() {
	c.stop()
	if c.ra != nil {
		c.ra.halt()
	}
	c.sendWithin(ber.Encode(ber.ClassApplication, ber.TypePrimitive, goldap.ApplicationUnbindRequest, nil, "Unbind Request"), nil, time.Second)
	c.nc.Close()
	if c.ra != nil {
		c.ra.wait()
	}
}
