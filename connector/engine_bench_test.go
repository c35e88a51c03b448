package connector_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/contactsync/contactsync/connector"
	"github.com/contactsync/contactsync/state"
)

// memSource hands over n LDAP-like records (11 attributes, accents), reusing
// one Record as the LDAP source does. round changes every title, so that a
// run after another round's run is all updates.
type memSource struct {
	n, round int
}

func (s *memSource) Pull(ctx context.Context, req connector.PullRequest, emit connector.Emitter) (connector.PullResult, error) {
	var rec connector.Record
	names := []string{"dn", "cn", "givenname", "sn", "telephonenumber", "mobile", "mail", "title", "o", "street", "l", "postalcode"}
	for i := 0; i < s.n; i++ {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return connector.PullResult{}, err
			}
		}
		id := fmt.Sprintf("%08x-5c1e-4b8e-9a41-%012d", i, i)
		rec.Key, rec.Origin = id, "uid="+id+",ou=suppliers,dc=example,dc=org"
		rec.Names = append(rec.Names[:0], names...)
		rec.Values = append(rec.Values[:0], rec.Origin, "Élodie Lefèvre "+strconv.Itoa(i), "Élodie", "Lefèvre",
			fmt.Sprintf("+33 1 %02d %02d %02d %02d", (i/1000000)%100, (i/10000)%100, (i/100)%100, i%100),
			fmt.Sprintf("06 %02d %02d %02d %02d", (i/1000000)%100, (i/10000)%100, (i/100)%100, i%100),
			"elodie.lefevre."+strconv.Itoa(i)+"@supplier.example", "Responsable achats r"+strconv.Itoa(s.round),
			"Boulangerie Müller & Fils", "12 rue de l'Église", "Paris", "75004")
		if err := emit.Record(&rec); err != nil {
			return connector.PullResult{}, err
		}
	}
	return connector.PullResult{Identity: "memory", Complete: true}, nil
}

// discardSink reads the whole plan, as a sink must, and keeps nothing:
// creates stay pending, as with the CSV sink.
type discardSink struct{ changes int }

func (d *discardSink) Apply(ctx context.Context, run connector.RunInfo, plan connector.Plan, out connector.Outcomes) (connector.ApplyResult, error) {
	err := plan.Changes(func(c *connector.Change) error {
		d.changes++
		return nil
	})
	return connector.ApplyResult{}, err
}

func benchJob(b *testing.B, region string, src *memSource) *connector.Job {
	b.Helper()
	v := connector.NewValidator(b.TempDir())
	m := &connector.MappingConfig{
		DisplayName: "{{.cn}}", FirstName: "{{.givenName}}", LastName: "{{.sn}}",
		Phones:      []connector.PhoneMapping{{Value: "{{.telephoneNumber}}", Type: "work"}, {Value: "{{.mobile}}", Type: "mobile"}},
		PhoneRegion: region, Email: "{{.mail}}", Title: "{{.title}}", CompanyName: "{{.o}}",
		Address: connector.AddressMapping{Street: "{{.street}}", City: "{{.l}}", Zip: "{{.postalCode}}"},
	}
	m.Validate(v.At("mapping"))
	if err := v.Err(); err != nil {
		b.Fatal(err)
	}
	mapping, err := m.Compile()
	if err != nil {
		b.Fatal(err)
	}
	safety := (&connector.SafetyConfig{}).Safety()
	safety.MaxDeletePercent = 100
	return &connector.Job{Name: "bench", Source: src, Sink: &discardSink{}, Mapping: mapping, PhoneRegion: region, Safety: safety, KeepDays: 30}
}

func openBenchState(b *testing.B) (*state.DB, string) {
	b.Helper()
	dir := b.TempDir()
	db, err := state.Open(context.Background(), filepath.Join(dir, "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db, dir
}

func runBench(b *testing.B, eng *connector.Engine, job *connector.Job, opts connector.RunOptions) *connector.Result {
	b.Helper()
	res, err := eng.Run(context.Background(), job, opts)
	if err != nil {
		b.Fatal(err)
	}
	return res
}

// BenchmarkEngine runs whole jobs over an in-memory source, a sink that
// discards the plan and a real SQLite state: "full" from an empty state
// (every record a create, committed with its audit), "unchanged" a full
// pull that changes nothing (the diff by hash), "updates" a full pull where
// every record changed (stored contents loaded, audit of each field). The
// region variants add phone normalisation (phone_region: FR), which
// dominates the mapping's cost.
func BenchmarkEngine(b *testing.B) {
	const n = 10_000
	for _, region := range []string{"", "FR"} {
		name := "region=" + region
		if region == "" {
			name = "region=none"
		}
		b.Run(name+"/full", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				db, dir := openBenchState(b)
				job := benchJob(b, region, &memSource{n: n})
				eng := &connector.Engine{Store: db, SpoolDir: dir}
				b.StartTimer()
				res := runBench(b, eng, job, connector.RunOptions{})
				if res.Run.Counts.Created != n {
					b.Fatalf("created %d, want %d", res.Run.Counts.Created, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
		b.Run(name+"/unchanged", func(b *testing.B) {
			db, dir := openBenchState(b)
			job := benchJob(b, region, &memSource{n: n})
			eng := &connector.Engine{Store: db, SpoolDir: dir}
			runBench(b, eng, job, connector.RunOptions{})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res := runBench(b, eng, job, connector.RunOptions{Full: true})
				if res.Run.Counts.Unchanged != n {
					b.Fatalf("unchanged %d, want %d", res.Run.Counts.Unchanged, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
		b.Run(name+"/updates", func(b *testing.B) {
			db, dir := openBenchState(b)
			src := &memSource{n: n}
			job := benchJob(b, region, src)
			eng := &connector.Engine{Store: db, SpoolDir: dir}
			runBench(b, eng, job, connector.RunOptions{})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				src.round++
				res := runBench(b, eng, job, connector.RunOptions{Full: true})
				// Creates through a file stay pending: their updates wait
				// for a UUID, but are planned, stored and audited all the same.
				if got := res.Run.Counts.Waiting + res.Run.Counts.Updated; got != n {
					b.Fatalf("updated+waiting %d, want %d", got, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
	}
}

// benchContact is a usual mapped contact: accented text, two phone
// numbers, an address.
func benchContact(display string) connector.Contact {
	var c connector.Contact
	c[connector.DisplayName], c[connector.FirstName], c[connector.LastName] = display, "Élodie", "Lefèvre"
	c[connector.Phone1], c[connector.Phone1Type] = "+33142685300", "work"
	c[connector.Phone2], c[connector.Phone2Type] = "+33612345678", "mobile"
	c[connector.Email], c[connector.Title], c[connector.CompanyName] = "elodie.lefevre@boulangerie-muller.example", "Responsable achats", "Boulangerie Müller & Fils"
	c[connector.AddressStreet], c[connector.AddressCity], c[connector.AddressZip] = "12 rue de l'Église", "Paris", "75004"
	return c
}

// BenchmarkHash is the per-record cost of hashing a mapped contact, which
// every record pays to be compared with its stored hash.
func BenchmarkHash(b *testing.B) {
	c := benchContact("Élodie Lefèvre 12345")
	b.ReportAllocs()
	var sink connector.Hash
	for i := 0; i < b.N; i++ {
		sink = c.Hash()
	}
	_ = sink
}

// BenchmarkMarshal is the cost of encoding a contact for the state (every
// create and update stores its content once).
func BenchmarkMarshal(b *testing.B) {
	c := benchContact("Élodie Lefèvre (Boulangerie Müller & Fils)")
	b.ReportAllocs()
	n := 0
	for i := 0; i < b.N; i++ {
		n += len(c.Marshal())
	}
	b.SetBytes(int64(n / max(b.N, 1)))
}

// BenchmarkDiff is the cost of listing the changed fields of an update (for
// plan output and the audit).
func BenchmarkDiff(b *testing.B) {
	var old, new connector.Contact
	old[connector.DisplayName], old[connector.Title], old[connector.Phone1] = "Élodie Lefèvre", "Responsable achats", "+33142685300"
	new = old
	new[connector.Title] = "Directrice des achats"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if len(connector.Diff(&old, &new)) != 1 {
			b.Fatal("want one changed field")
		}
	}
}

// BenchmarkEngineMillion runs jobs of 1,000,000 records (region=none, so
// that the mapping weighs little) and reports the live heap per record once
// the index is loaded and once the pull is over, above the heap before the
// run: "full" from an empty state (the keys new to the state), "unchanged"
// a full pull over the state the full run left (the index of every entry).
// It takes minutes: run it alone, with -benchtime=1x.
func BenchmarkEngineMillion(b *testing.B) {
	if testing.Short() {
		b.Skip("1,000,000 records")
	}
	const n = 1_000_000
	parent := b // the states outlive the sub-benchmarks
	db, dir := openBenchState(b)
	src := &memSource{n: n}
	job := benchJob(b, "", src)
	eng := &connector.Engine{Store: db, SpoolDir: dir}
	heapAt := func(b *testing.B, opts connector.RunOptions, check func(*connector.Result)) {
		index, pull, stop := connector.LiveHeap()
		defer stop()
		var before, idx, pl uint64
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before = ms.HeapAlloc
			b.StartTimer()
			res := runBench(b, eng, job, opts)
			check(res)
			idx, pl = index(), pull()
		}
		b.ReportMetric(float64(int64(idx)-int64(before))/n, "index-B/entry")
		b.ReportMetric(float64(int64(pl)-int64(before))/n, "pull-B/entry")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	}
	b.Run("full", func(b *testing.B) {
		heapAt(b, connector.RunOptions{}, func(res *connector.Result) {
			if res.Run.Counts.Created != n {
				b.Fatalf("created %d, want %d", res.Run.Counts.Created, n)
			}
			// The next round starts from an empty state again.
			b.StopTimer()
			db.Close()
			db, dir = openBenchState(parent)
			eng.Store, eng.SpoolDir = db, dir
			b.StartTimer()
		})
	})
	b.Run("unchanged", func(b *testing.B) {
		// In the sub-benchmark, so that running only "full" skips it.
		runBench(b, eng, job, connector.RunOptions{})
		heapAt(b, connector.RunOptions{Full: true}, func(res *connector.Result) {
			if res.Run.Counts.Unchanged != n {
				b.Fatalf("unchanged %d, want %d", res.Run.Counts.Unchanged, n)
			}
		})
	})
}
