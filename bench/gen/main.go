// Command gen writes the data sets of the contactsync benchmarks
// (bench/run.sh) and does the small chores the script needs:
//
//	gen ldif -n 100000 -suffix dc=example,dc=org > data.ldif     # slapadd input
//	gen ldif -n 100000 -uuids random ... > data.ldif              # entryUUIDs in no order (default: slapadd's)
//	gen modify -n 100 -of 100000 -suffix ... -round 1 > mod.ldif   # ldapmodify input
//	gen csv -n 1000000 > drop.csv                                  # CRM drop, Windows-1252, ';'
//	gen export outbox/*-import-*.csv > export.csv                  # a Control Hub export of them
//	gen rate sim-1.err sim-2.err ...                               # bulk calls/s in simulator logs
//	gen freeport                                                   # a free loopback port
//	gen table results.tsv                                          # medians and ratios
//
// The data are deterministic: the same N gives the same bytes, so that
// rounds and machines compare like with like.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gen ldif|modify|csv|export|rate|freeport|table ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "ldif", "modify", "csv":
		err = generate(os.Args[1], os.Args[2:])
	case "export":
		err = export(os.Args[2:])
	case "rate":
		err = rate(os.Args[2:])
	case "freeport":
		err = freePort()
	case "table":
		err = table(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

var (
	firstNames = []string{"Élodie", "François", "Anaïs", "Jérôme", "Gaëlle", "Noël", "Chloé", "Zoë", "Björn", "José", "Ana", "Paul", "Hélène", "Cécile", "Loïc", "Inès"}
	lastNames  = []string{"Lefèvre", "Dubois", "Bérenger", "Nguyen", "Le Goff", "Dupré", "Favre", "Müller", "Martin", "Gonçalves", "Bernard", "Petit", "Moreau", "Lambert", "Fontaine", "Rousseau"}
	companies  = []string{"Boulangerie Müller & Fils", "Société Générale d'Emballage", "Transports Côte d'Azur", "Café Noir SARL", "Électricité Ouest", "Imprimerie Dupré", "Fromagerie des Alpes", "Hôtel du Lac"}
	titles     = []string{"Responsable achats", "Directeur commercial", "Logistique", "Gérant", "Chargée d'affaires", "Imprimeur", "Commerciale", "Comptable"}
	cities     = []string{"Paris", "Lyon", "Nice", "Bordeaux", "Rennes", "Lille", "Annecy", "Besançon", "Orléans", "Nîmes"}
	streets    = []string{"rue de l'Église", "quai Saint-Antoine", "place du Marché", "rue Neuve", "route du Col", "allée des Tilleuls", "boulevard Hérault", "impasse Bellevue"}
)

// person is record i of every data set.
type person struct {
	id                                      string
	first, last, company, title, city, zip  string
	street, phone, mobile, mail, commonName string
}

// asciiFold makes an e-mail local part from a name.
func asciiFold(s string) string {
	r := strings.NewReplacer("é", "e", "è", "e", "ë", "e", "ê", "e", "ï", "i", "î", "i", "ö", "o", "ô", "o", "ü", "u", "ç", "c", "à", "a", "É", "e", " ", "-", "'", "")
	return strings.ToLower(r.Replace(s))
}

func makePerson(i, round int) person {
	p := person{
		id:      fmt.Sprintf("SUP-%07d", i),
		first:   firstNames[i%len(firstNames)],
		last:    lastNames[(i/7)%len(lastNames)],
		company: companies[(i/3)%len(companies)],
		title:   titles[(i/5)%len(titles)],
		city:    cities[(i/11)%len(cities)],
		zip:     fmt.Sprintf("%05d", 1000+i%94000),
		street:  fmt.Sprintf("%d %s", 1+i%120, streets[(i/13)%len(streets)]),
		// Valid French numbers, unique per record.
		phone:  fmt.Sprintf("+33 1 %02d %02d %02d %02d", (i/1000000)%100, (i/10000)%100, (i/100)%100, i%100),
		mobile: fmt.Sprintf("06 %02d %02d %02d %02d", (i/1000000)%100, (i/10000)%100, (i/100)%100, i%100),
	}
	if round > 0 {
		p.title = fmt.Sprintf("%s (rev %d)", p.title, round)
	}
	p.mail = fmt.Sprintf("%s.%s.%d@supplier%d.example", asciiFold(p.first), asciiFold(p.last), i, i%50)
	p.commonName = fmt.Sprintf("%s %s %07d", p.first, p.last, i)
	return p
}

// randomUUID is entry i's entryUUID when they are not the server's: a
// version 4 UUID drawn from i, so that every run generates the same ones.
// A directory built over years hands its entries over in an order that has
// nothing to do with their UUIDs; slapadd gives a fresh load ascending
// time-based ones, which a state keyed by entryUUID then stores in order.
func randomUUID(i int) string {
	b := sha256.Sum256([]byte("entry " + strconv.Itoa(i)))
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ldifAttr writes one attribute, base64 when the value is not plain ASCII
// (LDIF's SAFE-STRING).
func ldifAttr(w *bufio.Writer, name, v string) {
	safe := v != "" && v[0] != ' ' && v[0] != ':' && v[0] != '<'
	for i := 0; safe && i < len(v); i++ {
		safe = v[i] >= 0x20 && v[i] < 0x80
	}
	if safe {
		fmt.Fprintf(w, "%s: %s\n", name, v)
		return
	}
	fmt.Fprintf(w, "%s:: %s\n", name, base64.StdEncoding.EncodeToString([]byte(v)))
}

func generate(kind string, args []string) error {
	n, of, round := 1000, 0, 1
	suffix, uuids := "dc=example,dc=org", "server"
	for i := 0; i+1 < len(args); i += 2 {
		v := args[i+1]
		var err error
		switch args[i] {
		case "-n":
			n, err = strconv.Atoi(v)
		case "-of":
			of, err = strconv.Atoi(v)
		case "-round":
			round, err = strconv.Atoi(v)
		case "-suffix":
			suffix = v
		case "-uuids":
			if v != "server" && v != "random" {
				err = errors.New(`want "server" or "random"`)
			}
			uuids = v
		default:
			return fmt.Errorf("unknown flag %q", args[i])
		}
		if err != nil {
			return fmt.Errorf("%s: %w", args[i], err)
		}
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	var err error
	switch kind {
	case "ldif":
		fmt.Fprintf(w, "dn: ou=suppliers,%s\nobjectClass: organizationalUnit\nou: suppliers\n\n", suffix)
		for i := 0; i < n; i++ {
			p := makePerson(i, 0)
			fmt.Fprintf(w, "dn: uid=%s,ou=suppliers,%s\nobjectClass: inetOrgPerson\nuid: %s\n", p.id, suffix, p.id)
			if uuids == "random" {
				fmt.Fprintf(w, "entryUUID: %s\n", randomUUID(i))
			}
			// 11 mapped attributes.
			for _, a := range [...][2]string{{"cn", p.commonName}, {"givenName", p.first}, {"sn", p.last},
				{"telephoneNumber", p.phone}, {"mobile", p.mobile}, {"mail", p.mail}, {"title", p.title},
				{"o", p.company}, {"street", p.street}, {"l", p.city}, {"postalCode", p.zip}} {
				ldifAttr(w, a[0], a[1])
			}
			w.WriteByte('\n')
		}
	case "modify":
		// n changes spread evenly over the of entries.
		step := max(of/max(n, 1), 1)
		for k := 0; k < n; k++ {
			p := makePerson(k*step, round)
			fmt.Fprintf(w, "dn: uid=%s,ou=suppliers,%s\nchangetype: modify\nreplace: title\n", p.id, suffix)
			ldifAttr(w, "title", p.title)
			w.WriteString("-\n\n")
		}
	case "csv":
		err = writeCSV(w, n)
	}
	if err != nil {
		return err
	}
	return w.Flush()
}

// writeCSV writes a CRM export: Windows-1252, ';', quotes where needed,
// CRLF line ends, about 150 bytes a row.
func writeCSV(w io.Writer, n int) error {
	enc := charmap.Windows1252.NewEncoder()
	var line strings.Builder
	header := "Supplier ID;Company;Contact first name;Contact last name;Job title;Phone;Mobile;Email;Street;City;Postcode;Country\r\n"
	if _, err := io.WriteString(w, header); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		p := makePerson(i, 0)
		line.Reset()
		for j, v := range [...]string{p.id, p.company, p.first, p.last, p.title, p.phone, p.mobile, p.mail, p.street, p.city, p.zip, "France"} {
			if j > 0 {
				line.WriteByte(';')
			}
			if strings.ContainsAny(v, ";\"\r\n") {
				v = `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
			}
			line.WriteString(v)
		}
		line.WriteString("\r\n")
		b, err := enc.Bytes([]byte(line.String()))
		if err != nil || !utf8.ValidString(line.String()) {
			return fmt.Errorf("row %d: not encodable in Windows-1252: %v", i, err)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func freePort() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}
