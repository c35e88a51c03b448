package state

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/contactsync/contactsync/connector"
)

const benchContacts = 100_000

// benchRecords makes n applied creates with realistic contents.
func benchRecords(n int) []connector.ChangeRecord {
	recs := make([]connector.ChangeRecord, n)
	for i := range recs {
		c := mkContact(fmt.Sprintf("Supplier contact %06d", i), "Firstname", fmt.Sprintf("Lastname%06d", i))
		c[connector.Email] = fmt.Sprintf("contact%06d@supplier.example", i)
		c[connector.CompanyName] = "Supplier & Co"
		c[connector.Title] = "Account manager"
		c[connector.AddressCity] = "Paris"
		c[connector.AddressCountry] = "France"
		recs[i] = connector.ChangeRecord{Action: connector.ActionCreate, Key: fmt.Sprintf("%08x-5c1e-4b8e-9a41-%012d", i, i),
			UUID: fmt.Sprintf("%08x-0000-4000-8000-%012d", i, i), Status: "bound", New: &c, Applied: true}
	}
	return recs
}

// BenchmarkCommit measures one Commit of 100,000 creates into an empty
// state file: entries, audit rows and the run row in one transaction;
// once with the keys ascending, once in no order (they wait, then go in
// sorted: apply_order.go).
func BenchmarkCommit(b *testing.B) {
	asc := benchRecords(benchContacts)
	shuffled := slices.Clone(asc)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, bc := range []struct {
		name string
		recs []connector.ChangeRecord
	}{{"ascending", asc}, {"random", shuffled}} {
		b.Run(bc.name, func(b *testing.B) { benchCommit(b, bc.recs) })
	}
}

func benchCommit(b *testing.B, recs []connector.ChangeRecord) {
	ctx := context.Background()
	b.ReportAllocs()
	var cpu time.Duration
	var size int64 // of the state file, checkpointed
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d, _ := openTest(b)
		id, err := d.StartRun(ctx, connector.Run{Job: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		c0 := cpuTime()
		err = d.Commit(ctx, &connector.Commit{
			Run:     connector.Run{ID: id, Job: "bench", Status: connector.StatusOK, Counts: connector.Counts{Created: benchContacts}},
			Changes: recordsIter(recs),
		})
		if err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c0
		b.StopTimer()
		if _, err := d.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			b.Fatal(err)
		}
		fi, err := os.Stat(d.Path())
		if err != nil {
			b.Fatal(err)
		}
		size = fi.Size()
		_ = d.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchContacts), "ns/change")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*benchContacts), "cpu-ns/change")
	b.ReportMetric(float64(size)/benchContacts, "file-B/change")
}

// cpuTime is the process's user and system CPU time: on a shared machine
// it moves less with the load than the wall-clock time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEntries measures a scan of a job's 100,000 entries.
func BenchmarkEntries(b *testing.B) {
	ctx := context.Background()
	d, _ := openTest(b)
	if _, err := commitRecs(b, d, "bench", benchRecords(benchContacts)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		n := 0
		if err := d.Entries(ctx, "bench", func(connector.Entry) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != benchContacts {
			b.Fatalf("%d entries", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchContacts), "ns/entry")
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N*benchContacts), "cpu-ns/entry")
}

// BenchmarkEntriesByKey measures the look-up of 500 keys spread over a
// job's 100,000 entries, what an incremental run does for each 500 records:
// against BenchmarkEntries, it says when reading every entry is cheaper.
func BenchmarkEntriesByKey(b *testing.B) {
	ctx := context.Background()
	d, _ := openTest(b)
	recs := benchRecords(benchContacts)
	if _, err := commitRecs(b, d, "bench", recs); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 500)
	for i := range keys {
		keys[i] = recs[i*(benchContacts/len(keys))+7].Key
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		if err := d.EntriesByKey(ctx, "bench", keys, func(connector.Entry) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != len(keys) {
			b.Fatalf("%d entries", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
}
