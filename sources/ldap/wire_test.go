package ldap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/contactsync/contactsync/connector"
	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// attr is one attribute of a test entry.
type attr struct {
	name string
	vals []string // may hold any bytes
}

// entryMessage encodes a SearchResultEntry LDAPMessage with go-asn1-ber,
// as a server would send it.
func entryMessage(id int64, dn string, attrs ...attr) []byte {
	pkt := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	pkt.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationSearchResultEntry, nil, "")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, ""))
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	for _, a := range attrs {
		ap := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		ap.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a.name, ""))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "")
		for _, v := range a.vals {
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, ""))
		}
		ap.AppendChild(set)
		list.AppendChild(ap)
	}
	op.AppendChild(list)
	pkt.AppendChild(op)
	return pkt.Bytes()
}

// eventRecorder writes down every emitted event as one line, in order,
// copying what the source reuses.
type eventRecorder struct{ events []string }

func (r *eventRecorder) Record(rec *connector.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "record %q %q", rec.Key, rec.Origin)
	for i, n := range rec.Names {
		fmt.Fprintf(&b, " %s=%q", n, rec.Values[i])
	}
	r.events = append(r.events, b.String())
	return nil
}

func (r *eventRecorder) Reject(key, origin, reason string) error {
	r.events = append(r.events, fmt.Sprintf("reject %q %q %q", key, origin, reason))
	return nil
}

func (r *eventRecorder) Delete(key, origin string) error {
	r.events = append(r.events, fmt.Sprintf("delete %q %q", key, origin))
	return nil
}

func testPull(key string, emit connector.Emitter) *pull {
	return &pull{s: &Source{cfg: Config{URL: "ldap://test"}, log: slog.New(slog.DiscardHandler)}, key: key, emit: emit}
}

// referenceEntry decodes msg as go-ldap does (a ber.Packet tree made into
// a goldap.Entry) and emits it through pull.entry, the go-ldap path. ok is
// false when the message is not a well-formed entry for go-asn1-ber.
func referenceEntry(key string, msg []byte) (events []string, ok bool) {
	pkt, err := ber.DecodePacketErr(msg)
	if err != nil || len(pkt.Children) < 2 {
		return nil, false
	}
	op := pkt.Children[1]
	if len(op.Children) < 2 {
		return nil, false
	}
	dn, isStr := op.Children[0].Value.(string)
	if !isStr {
		return nil, false
	}
	e := &goldap.Entry{DN: dn}
	for _, child := range op.Children[1].Children {
		if len(child.Children) < 2 {
			return nil, false
		}
		name, isStr := child.Children[0].Value.(string)
		if !isStr {
			return nil, false
		}
		a := &goldap.EntryAttribute{Name: name}
		for _, v := range child.Children[1].Children {
			b := v.Data.Bytes()
			a.Values, a.ByteValues = append(a.Values, string(b)), append(a.ByteValues, b)
		}
		e.Attributes = append(e.Attributes, a)
	}
	r := &eventRecorder{}
	testPull(key, r).entry(e)
	return r.events, true
}

// leanEntryEvents decodes msg with the lean decoder, as leanMessage does.
func leanEntryEvents(key string, msg []byte) ([]string, error) {
	m, err := parseMessage(msg)
	if err != nil {
		return nil, err
	}
	if m.op != tagSearchEntry {
		return nil, errors.New("not an entry")
	}
	r := &eventRecorder{}
	if err := testPull(key, r).leanEntry(newEntryDecoder(key), m.body); err != nil {
		return nil, err
	}
	return r.events, nil
}

var guid = string([]byte{0x4f, 0x6b, 0x20, 0x6a, 0xc3, 0x3c, 0x7a, 0x4f, 0x9b, 0x8d, 0x5e, 0x26, 0xd4, 0x2b, 0x38, 0x1f})

var entryCases = []struct {
	name  string
	key   string
	dn    string
	attrs []attr
	want  string // the lean path's only event
}{
	{"plain", "entryUUID", "uid=ada,dc=x", []attr{{"entryUUID", []string{"u-1"}}, {"cn", []string{"Ada"}}},
		`record "u-1" "uid=ada,dc=x" dn="uid=ada,dc=x" entryuuid="u-1" cn="Ada"`},
	{"first value only", "entryUUID", "uid=a", []attr{{"entryUUID", []string{"u"}}, {"telephoneNumber", []string{"+33 1", "+33 2"}}},
		`record "u" "uid=a" dn="uid=a" entryuuid="u" telephonenumber="+33 1"`},
	{"accents", "entryUUID", "uid=élodie", []attr{{"entryUUID", []string{"u"}}, {"o", []string{"Société Générale"}}},
		`record "u" "uid=élodie" dn="uid=élodie" entryuuid="u" o="Société Générale"`},
	{"repeated name in another case", "entryUUID", "uid=a", []attr{{"entryUUID", []string{"u"}}, {"CN", []string{"first"}}, {"cn", []string{"second"}}},
		`record "u" "uid=a" dn="uid=a" entryuuid="u" cn="first"`},
	{"attribute without values", "entryUUID", "uid=a", []attr{{"mail", nil}, {"entryUUID", []string{"u"}}, {"mail", []string{"m"}}},
		`record "u" "uid=a" dn="uid=a" entryuuid="u" mail="m"`},
	{"empty value", "entryUUID", "uid=a", []attr{{"entryUUID", []string{"u"}}, {"title", []string{""}}},
		`record "u" "uid=a" dn="uid=a" entryuuid="u" title=""`},
	{"non-UTF-8 as hex", "entryUUID", "uid=a", []attr{{"entryUUID", []string{"u"}}, {"jpegPhoto", []string{"\xff\xd8\xff"}}},
		`record "u" "uid=a" dn="uid=a" entryuuid="u" jpegphoto="ffd8ff"`},
	{"GUID key", "objectGUID", "CN=a", []attr{{"objectGUID", []string{guid}}, {"cn", []string{"a"}}},
		`record "6a206b4f-3cc3-4f7a-9b8d-5e26d42b381f" "CN=a" dn="CN=a" objectguid="6a206b4f-3cc3-4f7a-9b8d-5e26d42b381f" cn="a"`},
	{"GUID of the wrong length", "objectGUID", "CN=a", []attr{{"objectGUID", []string{"\xff\x01"}}},
		`record "ff01" "CN=a" dn="CN=a" objectguid="ff01"`},
	{"consistency GUID", "cn", "CN=a", []attr{{"cn", []string{"a"}}, {"mS-DS-ConsistencyGuid", []string{guid}}},
		`record "a" "CN=a" dn="CN=a" cn="a" ms-ds-consistencyguid="6a206b4f-3cc3-4f7a-9b8d-5e26d42b381f"`},
	{"key missing", "mail", "uid=grace", []attr{{"cn", []string{"Grace"}}},
		`reject "" "uid=grace" "entry \"uid=grace\" has no mail attribute (the key)"`},
	{"key empty", "mail", "uid=a", []attr{{"mail", []string{""}}},
		`reject "" "uid=a" "entry \"uid=a\" has no mail attribute (the key)"`},
	{"key without values, then with", "mail", "uid=a", []attr{{"mail", nil}, {"MAIL", []string{"m"}}},
		`reject "" "uid=a" "entry \"uid=a\" has no mail attribute (the key)"`},
	{"long values", "entryUUID", "uid=a", []attr{{"entryUUID", []string{"u"}}, {"description", []string{strings.Repeat("x", 300), "y"}}},
		`record "u" "uid=a" dn="uid=a" entryuuid="u" description="` + strings.Repeat("x", 300) + `"`},
	{"no attributes", "entryUUID", "uid=a", nil,
		`reject "" "uid=a" "entry \"uid=a\" has no entryUUID attribute (the key)"`},
}

// TestDecodeEntry checks the lean decoder against go-ldap's path on the
// same bytes.
func TestDecodeEntry(t *testing.T) {
	for _, tt := range entryCases {
		t.Run(tt.name, func(t *testing.T) {
			msg := entryMessage(7, tt.dn, tt.attrs...)
			got, err := leanEntryEvents(tt.key, msg)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("lean events = %q\nwant %q", got, tt.want)
			}
			ref, ok := referenceEntry(tt.key, msg)
			if !ok || !slices.Equal(got, ref) {
				t.Errorf("go-ldap path = %q (decoded %v)\nlean = %q", ref, ok, got)
			}
		})
	}
}

func TestDecodeEntryAllocations(t *testing.T) {
	msg := entryMessage(3, "uid=p000001,ou=bulk,dc=example,dc=org", attr{"entryUUID", []string{"0a1b2c3d-0000-1111-2222-333344445555"}},
		attr{"cn", []string{"Person 1"}}, attr{"sn", []string{"P1"}}, attr{"givenName", []string{"Given1"}},
		attr{"telephoneNumber", []string{"+33 1 00000001"}}, attr{"mail", []string{"p1@bulk.example"}}, attr{"o", []string{"Bulk"}})
	m, err := parseMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	p := testPull("entryUUID", &eventRecorder{})
	p.emit = discard{}
	dec := newEntryDecoder("entryUUID")
	if err := p.leanEntry(dec, m.body); err != nil { // interns the names
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := p.leanEntry(dec, m.body); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("%v allocations per entry, want 1 (the entry's string)", allocs)
	}
}

type discard struct{}

func (discard) Record(*connector.Record) error { return nil }
func (discard) Reject(_, _, _ string) error    { return nil }
func (discard) Delete(_, _ string) error       { return nil }

func TestDecodeEntryMalformed(t *testing.T) {
	good := entryMessage(1, "uid=a", attr{"entryUUID", []string{"u"}}, attr{"cn", []string{"a", "b"}})
	tests := []struct {
		name string
		msg  []byte
	}{
		{"value not an octet string", bytes.Replace(good, []byte{0x04, 0x01, 'b'}, []byte{0x02, 0x01, 'b'}, 1)},
		{"values not a set", bytes.Replace(good, []byte{0x31, 0x06}, []byte{0x30, 0x06}, 1)},
		{"indefinite length", bytes.Replace(good, []byte{0x31, 0x06}, []byte{0x31, 0x80}, 1)},
		{"value length past its set", bytes.Replace(good, []byte{0x04, 0x01, 'b'}, []byte{0x04, 0x02, 'b'}, 1)},
		{"multi-byte tag", bytes.Replace(good, []byte{0x04, 0x01, 'b'}, []byte{0x1f, 0x01, 'b'}, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Equal(tt.msg, good) {
				t.Fatal("the replacement did not apply")
			}
			if ev, err := leanEntryEvents("entryUUID", tt.msg); err == nil {
				t.Errorf("decoded %q, want an error", ev)
			}
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(good) {
			if ev, err := leanEntryEvents("entryUUID", good[:n]); err == nil {
				t.Errorf("%d of %d bytes decoded to %q", n, len(good), ev)
			}
		}
	})
}

func TestFramer(t *testing.T) {
	small := entryMessage(1, "uid=a", attr{"cn", []string{"a"}})                           // short-form length
	medium := entryMessage(2, "uid=b", attr{"cn", []string{strings.Repeat("b", 1000)}})    // 0x82 long form
	big := entryMessage(3, "uid=c", attr{"cn", []string{strings.Repeat("c", readBuffer)}}) // larger than the read buffer
	stream := slices.Concat(small, medium, big, small)
	if medium[1] != 0x82 || big[1] != 0x83 {
		t.Fatalf("length forms 0x%02x, 0x%02x: the test data does not cover long forms", medium[1], big[1])
	}
	readers := []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(stream) }},
		{"one byte per read", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half per read", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
	}
	for _, rr := range readers {
		t.Run(rr.name, func(t *testing.T) {
			f := newFramer(rr.r())
			for i, want := range [][]byte{small, medium, big, small} {
				got, err := f.next()
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("message %d: %d bytes, want %d", i, len(got), len(want))
				}
			}
			if _, err := f.next(); err != io.EOF {
				t.Errorf("after the last message: %v, want io.EOF", err)
			}
		})
	}
	bad := []struct {
		name, want string
		in         []byte
	}{
		{"cut inside a message", "unexpected EOF", medium[:500]},
		{"cut inside the length", "unexpected EOF", medium[:3]},
		{"cut after the tag", "unexpected EOF", medium[:1]},
		{"indefinite length", "indefinite length", []byte{0x30, 0x80, 0x02, 0x01, 0x01, 0, 0}},
		{"oversize", "larger than the limit", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}},
		{"length of 5 bytes", "too long", []byte{0x30, 0x85, 0, 0, 0, 0, 1}},
		{"not a sequence", "not an LDAP message", []byte{0x04, 0x01, 'x'}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newFramer(bytes.NewReader(tt.in)).next()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseMessage(t *testing.T) {
	done := func(id int64, code int, diag string) []byte { return doneMessage(id, code, diag, []byte("next")) }
	tests := []struct {
		name    string
		msg     []byte
		id      int64
		wantErr string // of resultError; "" for success
	}{
		{"success", done(5, 0, ""), 5, ""},
		{"large message ID", done(300000, 0, ""), 300000, ""},
		{"size limit", done(6, 4, "too many"), 6, `LDAP Result Code 4 "Size Limit Exceeded": too many`},
		{"no such object", done(7, 32, ""), 7, `LDAP Result Code 32 "No Such Object": `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMessage(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if m.id != tt.id || m.op != tagSearchDone {
				t.Errorf("id=%d op=0x%02x, want %d 0x%02x", m.id, m.op, tt.id, tagSearchDone)
			}
			err = resultError(m.body)
			switch {
			case tt.wantErr == "" && err != nil, tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("resultError = %v, want %q", err, tt.wantErr)
			}
			controls, err := decodeControls(m.controls)
			if err != nil {
				t.Fatal(err)
			}
			if pc, ok := goldap.FindControl(controls, goldap.ControlTypePaging).(*goldap.ControlPaging); !ok || string(pc.Cookie) != "next" {
				t.Errorf("controls = %v, want the paging cookie", controls)
			}
		})
	}
}

// FuzzDecodeEntry feeds arbitrary bytes to the framer and the entry
// decoder: they never panic, never accept a truncated message, and agree
// with go-ldap's path whenever both decode the message.
func FuzzDecodeEntry(f *testing.F) {
	for _, tt := range entryCases {
		f.Add(tt.key, entryMessage(9, tt.dn, tt.attrs...))
	}
	f.Fuzz(func(t *testing.T, key string, msg []byte) {
		if key == "" {
			key = "entryUUID"
		}
		fr := newFramer(bytes.NewReader(msg))
		framed, ferr := fr.next()
		got, err := leanEntryEvents(key, msg)
		if err != nil {
			return
		}
		if ferr != nil || !bytes.Equal(framed, msg) {
			t.Fatalf("the decoder took a message the framer did not frame whole: %v", ferr)
		}
		if len(msg) <= 1024 {
			for n := range len(msg) {
				if _, err := leanEntryEvents(key, msg[:n]); err == nil {
					t.Fatalf("a truncation to %d of %d bytes decoded", n, len(msg))
				}
				if _, err := newFramer(bytes.NewReader(msg[:n])).next(); err == nil {
					t.Fatalf("a truncation to %d of %d bytes was framed", n, len(msg))
				}
			}
		}
		if ref, ok := referenceEntry(key, msg); ok && !slices.Equal(got, ref) {
			t.Fatalf("lean %q\ngo-ldap %q", got, ref)
		}
	})
}

// request encodes a message as asn1-ber encodes the same packet tree, for
// every length form of the message, the ID and the cookie.
func TestRequestMatchesBER(t *testing.T) {
	many := make([]string, 400) // a search op longer than 255 bytes
	for i := range many {
		many[i] = fmt.Sprint("attribute", i)
	}
	tests := []struct {
		name   string
		id     int64
		attrs  []string
		cookie []byte // nil: no control
	}{
		{"short, no control", 1, []string{"cn"}, nil},
		{"ID 127", 127, []string{"cn"}, []byte{}},
		{"ID 128", 128, []string{"cn", "sn"}, []byte("c")},
		{"ID 300000", 300000, []string{"cn"}, bytes.Repeat([]byte{0xff}, 200)},
		{"ID past 2^31", 1<<31 + 5, many, bytes.Repeat([]byte("k"), 70000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, err := searchRequest("ou=suppliers,dc=example,dc=org", "(objectClass=inetOrgPerson)", tt.attrs)
			if err != nil {
				t.Fatal(err)
			}
			var controls []goldap.Control
			if tt.cookie != nil {
				paging := goldap.NewControlPaging(500)
				paging.SetCookie(tt.cookie)
				controls = append(controls, paging)
			}
			pkt := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
			pkt.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, tt.id, "MessageID"))
			pkt.AppendChild(op)
			if len(controls) > 0 {
				cp := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
				for _, ctl := range controls {
					cp.AppendChild(ctl.Encode())
				}
				pkt.AppendChild(cp)
			}
			want := pkt.Bytes()
			if got := request(tt.id, op.Bytes(), controls); !bytes.Equal(got, want) {
				t.Errorf("request = % x...\nwant      % x...", got[:min(len(got), 16)], want[:min(len(want), 16)])
			}
		})
	}
}
