package connector

import (
	"runtime/debug"
	"strconv"
	"sync"
)

// mappingVersion is part of every mapping's fingerprint: bump it when a
// change to this package makes Apply give a different contact for the same
// record and configuration, so that the next run maps every record again
// instead of trusting the stored source hashes.
const mappingVersion = "1"

// phonenumbersVersion is the version of the phone number library built in:
// its metadata decides how numbers are normalised.
var phonenumbersVersion = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/nyaruka/phonenumbers" {
			if d.Replace != nil {
				d = d.Replace
			}
			return d.Version + " " + d.Sum
		}
	}
	return ""
})

// hashWriter feeds length-prefixed strings into a digest, so that no two
// different lists share an input.
type hashWriter struct {
	buf []byte
}

func (w *hashWriter) str(s string) {
	w.buf = strconv.AppendInt(w.buf, int64(len(s)), 10)
	w.buf = append(w.buf, ':')
	w.buf = append(w.buf, s...)
}

func (w *hashWriter) sum() Hash { return hash16(w.buf) }

// fingerprint digests everything of the configuration that Apply's result
// depends on.
func (m *MappingConfig) fingerprint() Hash {
	w := &hashWriter{}
	w.str("contactsync mapping " + mappingVersion)
	w.str(phonenumbersVersion())
	for _, f := range m.simpleFields() {
		w.str(f.key)
		w.str(f.src)
	}
	w.str("phones " + strconv.Itoa(len(m.Phones)))
	for _, p := range m.Phones {
		w.str(p.Value)
		w.str(p.Type)
	}
	w.str("region " + m.validRegion())
	w.str("require_phone " + strconv.FormatBool(m.requirePhone()))
	w.str("groups " + strconv.Itoa(len(m.GroupIDs)))
	for _, g := range m.GroupIDs {
		w.str(g)
	}
	return w.sum()
}

// Fingerprint returns a digest of the mapping's configuration (templates,
// phone types, region, require_phone) and of the mapping code's version: it
// changes whenever the same record could map to a different contact.
func (m *Mapping) Fingerprint() Hash { return m.fingerprint }

// SourceHash returns the digest of a record as the mapping sees it: the
// mapping's fingerprint, the key, and every attribute's name and value in
// order. Equal source hashes map to equal contacts, so a record whose
// source hash is the stored one need not be mapped again. Origin is left
// out: templates cannot read it.
//
// Every record pays for it, so the input is written into a stack buffer by
// hand (putField); a record with a value of 100 bytes or more, or more than
// the buffer holds, takes sourceHashAppend, which writes the same bytes.
func (m *Mapping) SourceHash(r *Record) Hash {
	var buf [1024]byte
	n := copy(buf[:], m.fingerprint[:])
	n = putField(buf[:], n, r.Key)
	if n < 0 || len(r.Names) >= 100 {
		return m.sourceHashAppend(r)
	}
	// The key is under 100 bytes: the buffer has room for this.
	if len(r.Names) >= 10 {
		buf[n] = byte('0' + len(r.Names)/10)
		n++
	}
	buf[n] = byte('0' + len(r.Names)%10)
	buf[n+1] = ';'
	n += 2
	for i, name := range r.Names {
		v := ""
		if i < len(r.Values) {
			v = r.Values[i]
		}
		if n = putField(buf[:], n, name); n < 0 {
			return m.sourceHashAppend(r)
		}
		if n = putField(buf[:], n, v); n < 0 {
			return m.sourceHashAppend(r)
		}
	}
	return hash16(buf[:n])
}

// sourceHashAppend is SourceHash for any record.
func (m *Mapping) sourceHashAppend(r *Record) Hash {
	var stack [1024]byte
	w := hashWriter{buf: stack[:0]}
	w.buf = append(w.buf, m.fingerprint[:]...)
	w.str(r.Key)
	w.buf = strconv.AppendInt(w.buf, int64(len(r.Names)), 10)
	w.buf = append(w.buf, ';')
	for i, n := range r.Names {
		w.str(n)
		v := ""
		if i < len(r.Values) {
			v = r.Values[i]
		}
		w.str(v)
	}
	return w.sum()
}
