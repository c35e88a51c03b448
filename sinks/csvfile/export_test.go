package csvfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/contactsync/contactsync/connector"
	"golang.org/x/text/encoding/unicode"
)

type wantRow struct {
	line   int
	uuid   string
	fields map[connector.Field]string
}

func (w wantRow) row() ExportRow {
	r := ExportRow{Line: w.line, UUID: w.uuid}
	for f, v := range w.fields {
		r.Contact[f] = v
	}
	return r
}

const (
	uuid1 = "6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	uuid2 = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
)

// template is the 28-column header, as Control Hub exports it.
var template = strings.Join(connector.TemplateHeader(), ",")

func utf16le(t *testing.T, s string) string {
	b, err := unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadExport(t *testing.T) {
	dn, p1, p1t, p2t, mail, co := connector.DisplayName, connector.Phone1, connector.Phone1Type, connector.Phone2Type, connector.Email, connector.CompanyName
	tests := []struct {
		name    string
		in      string
		want    []wantRow
		wantErr string // the error must contain it
	}{
		{
			name: "template layout",
			in:   template + "\n" + "Acme," + uuid1 + ",Jean,Martin,+33142000001,work" + strings.Repeat(",", 22) + "\n",
			want: []wantRow{{2, uuid1, map[connector.Field]string{dn: "Acme", connector.FirstName: "Jean", connector.LastName: "Martin", p1: "+33142000001", p1t: "work"}}},
		},
		{
			name: "extra unknown column, reordered, CRLF, BOM",
			in: "\xef\xbb\xbfContact UUID,Source,Phone Number 1,Display Name,Contact Email\r\n" +
				uuid1 + ",CH,+33100000001,One,one@example.com\r\n" +
				uuid2 + ",CH,+33100000002,\"Two, Inc.\",\r\n",
			want: []wantRow{
				{2, uuid1, map[connector.Field]string{dn: "One", p1: "+33100000001", mail: "one@example.com"}},
				{3, uuid2, map[connector.Field]string{dn: "Two, Inc.", p1: "+33100000002"}},
			},
		},
		{
			name: "rows with an extra field beyond the header (Cisco's added comma), and short rows",
			in: "Display Name,Contact UUID,Phone Number 1,Phone Number 1 Type\n" +
				"One," + uuid1 + ",+33100000001,work,\n" +
				"Two," + uuid2 + "\n",
			want: []wantRow{
				{2, uuid1, map[connector.Field]string{dn: "One", p1: "+33100000001", p1t: "work"}},
				{3, uuid2, map[connector.Field]string{dn: "Two"}},
			},
		},
		{
			name: "upper-case phone types and padded header names",
			in: " display name ,CONTACT UUID,Phone Number 1 Type,Phone Number 2 Type\n" +
				"One, " + uuid1 + " ,WORK, Mobile \n",
			want: []wantRow{{2, uuid1, map[connector.Field]string{dn: "One", p1t: "work", p2t: "mobile"}}},
		},
		{
			name: "blank rows skipped, multi-line value keeps its start line",
			in: "Display Name,Contact UUID,Address Street\r\n" +
				",,\r\n" +
				"\r\n" +
				"One," + uuid1 + ",\"1 rue X\r\nBât. B\"\r\n" +
				"Two,,\r\n",
			want: []wantRow{
				{4, uuid1, map[connector.Field]string{dn: "One", connector.AddressStreet: "1 rue X\nBât. B"}},
				{6, "", map[connector.Field]string{dn: "Two"}},
			},
		},
		{
			name: "windows-1252",
			in:   "Display Name,Contact UUID,Company Name\r\nSoci\xe9t\xe9 G\xe9n\xe9rale," + uuid1 + ",\x80uro \x93Quotes\x94\r\n",
			want: []wantRow{{2, uuid1, map[connector.Field]string{dn: "Société Générale", co: "€uro “Quotes”"}}},
		},
		{
			name: "windows-1252 after a UTF-8 BOM",
			in:   "\xef\xbb\xbfDisplay Name,Contact UUID\r\nM\xfcller," + uuid1 + "\r\n",
			want: []wantRow{{2, uuid1, map[connector.Field]string{dn: "Müller"}}},
		},
		{
			name: "utf-16 with BOM",
			in:   utf16le(t, "Display Name\tContact UUID\r\nÉlodie\t"+uuid1+"\r\n"),
			want: []wantRow{{2, uuid1, map[connector.Field]string{dn: "Élodie"}}},
		},
		{
			name: "semicolons from a spreadsheet re-save",
			in:   "Display Name;Contact UUID;Company Name\nOne;" + uuid1 + ";A, B\n",
			want: []wantRow{{2, uuid1, map[connector.Field]string{dn: "One", co: "A, B"}}},
		},
		{
			name: "header only",
			in:   template + "\n",
		},
		{
			name:    "empty file",
			in:      "",
			wantErr: `csvfile: export "export.csv" line 1: empty file, no header row`,
		},
		{
			name:    "BOM only",
			in:      "\xef\xbb\xbf",
			wantErr: `"export.csv" line 1: empty file`,
		},
		{
			name:    "no Contact UUID: a 27-column template",
			in:      "Display Name,First Name\nOne,Ann\n",
			wantErr: `csvfile: export "export.csv" line 1: header has no "Contact UUID" column`,
		},
		{
			name:    "no Display Name",
			in:      "Contact UUID,First Name\n" + uuid1 + ",Ann\n",
			wantErr: `csvfile: export "export.csv" line 1: header has no "Display Name" column`,
		},
		{
			name:    "duplicate column",
			in:      "Display Name,Contact UUID,contact uuid\n",
			wantErr: `line 1: columns 2 and 3 are both "Contact UUID"`,
		},
		{
			name:    "unterminated quote",
			in:      "Display Name,Contact UUID\nOne," + uuid1 + "\n\"Two,x\nThree,y\n",
			wantErr: `csvfile: export "export.csv" line 4 (record starting on line 3): extraneous or missing " in quoted-field`,
		},
		{
			name:    "bare quote",
			in:      "Display Name,Contact UUID\nO\"Brien," + uuid1 + "\n",
			wantErr: `csvfile: export "export.csv" line 2: bare " in non-quoted-field`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []ExportRow
			err := ReadExportFrom("export.csv", strings.NewReader(tt.in), func(r ExportRow) error {
				got = append(got, r)
				return nil
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []ExportRow
			for _, w := range tt.want {
				want = append(want, w.row())
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("rows:\n%+v\nwant:\n%+v", got, want)
			}
		})
	}
}

func TestReadExportFile(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(dir, "nope.csv")
		err := ReadExport(p, func(ExportRow) error { return nil })
		if err == nil || !strings.Contains(err.Error(), p) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("callback error names the line", func(t *testing.T) {
		p := writeFile(t, filepath.Join(dir, "e.csv"), "Display Name,Contact UUID\nOne,"+uuid1+"\nTwo,"+uuid2+"\n")
		stop := errors.New("unknown contact")
		err := ReadExport(p, func(r ExportRow) error {
			if r.UUID == uuid2 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || !strings.Contains(err.Error(), `"`+p+`" line 3: unknown contact`) {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("a file larger than the read buffer, Windows-1252 near the end", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Display Name,Contact UUID,Title\r\n")
		for b.Len() < 200<<10 {
			b.WriteString("Nom,," + strings.Repeat("x", 100) + "\r\n")
		}
		b.WriteString("Andr\xe9," + uuid1 + ",\r\n")
		p := writeFile(t, filepath.Join(dir, "big.csv"), b.String())
		var last ExportRow
		n := 0
		err := ReadExport(p, func(r ExportRow) error { last = r; n++; return nil })
		if err != nil || last.Contact[connector.DisplayName] != "André" || last.Line != n+1 {
			t.Errorf("last row %+v after %d rows, err %v", last, n, err)
		}
	})
}

// TestExportRoundTrip reads back what Apply wrote (with the UUIDs an
// export would carry): every field, including line breaks, quotes and
// accents, comes back as written.
func TestExportRoundTrip(t *testing.T) {
	gc, plan := loadCase(t, "testdata/apply/escaping/case.json")
	_ = gc
	dir := t.TempDir()
	s := openSink(t, Config{Dir: dir})
	res, err := apply(t, s, 1, plan)
	if err != nil {
		t.Fatal(err)
	}
	var got []ExportRow
	err = ReadExport(res.Files[0], func(r ExportRow) error { got = append(got, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	var want []connector.Contact
	var uuids []string
	for _, c := range plan.changes {
		if c.Action == connector.ActionDelete {
			continue
		}
		// encoding/csv writes CRLF inside values and reads them back as LF.
		for i := range c.Contact {
			c.Contact[i] = strings.ReplaceAll(c.Contact[i], "\r\n", "\n")
		}
		want = append(want, c.Contact)
		uuids = append(uuids, c.UUID)
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Contact != want[i] || got[i].UUID != uuids[i] {
			t.Errorf("row %d:\n%q %q\nwant\n%q %q", i, got[i].UUID, got[i].Contact, uuids[i], want[i])
		}
	}
}

// FuzzReadExport feeds arbitrary bytes to the reader: it must not panic,
// every error names the file and a line, and rows come in line order with
// lower-case phone types.
func FuzzReadExport(f *testing.F) {
	f.Add([]byte(template + "\r\nOne," + uuid1 + ",,,+331,WORK\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		last := 1
		err := ReadExportFrom("fuzz.csv", bytes.NewReader(data), func(r ExportRow) error {
			if r.Line <= last {
				t.Fatalf("row on line %d after line %d", r.Line, last)
			}
			last = r.Line
			for p := 0; p < connector.MaxPhones; p++ {
				_, typ := connector.PhoneField(p)
				if v := r.Contact[typ]; v != strings.ToLower(v) {
					t.Fatalf("phone type %q not lower-cased", v)
				}
			}
			return nil
		})
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, `csvfile: export "fuzz.csv" `) || !strings.Contains(msg, "line ") {
				t.Fatalf("error does not name the file and line: %v", err)
			}
		}
	})
}

func TestValidUTF8(t *testing.T) {
	tests := []struct {
		in        string
		truncated bool
		want      bool
	}{
		{"", false, true},
		{"Société Générale 東京 😀", false, true},
		{"Soci\xe9t\xe9", false, false},
		{"ends in a cut rune \xc3", false, false},
		{"cut by a read limit \xf0\x9f\x98", true, true},
		{"invalid before the limit \xff x", true, false},
	}
	for _, tt := range tests {
		// One byte per Read splits every multi-byte rune across reads.
		for name, r := range map[string]io.Reader{
			"whole":    strings.NewReader(tt.in),
			"one byte": iotest.OneByteReader(strings.NewReader(tt.in)),
		} {
			got, err := validUTF8(r, tt.truncated)
			if err != nil || got != tt.want {
				t.Errorf("validUTF8(%q, %v) [%s] = %v, %v; want %v", tt.in, tt.truncated, name, got, err, tt.want)
			}
		}
	}
}
