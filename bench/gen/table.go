package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// table reads the measurements bench/run.sh appended, one a line:
//
//	time <case> <who> <round> <seconds> <max-rss-kB>
//	note <case> <text...>
//
// and prints, per case in first-seen order, the median seconds of
// contactsync and of its baseline, their ratio and the peak RSS.
func table(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: gen table results.tsv")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(os.Stdout)
	if err := writeTable(w, f, args[0]); err != nil {
		return err
	}
	return w.Flush()
}

// writeTable is table's work: the measurements read from r (named name in
// errors), the table written to w.
//
// Besides the ratio of the medians, the table gives the range and the
// median of each round's own ratio: contactsync and its baseline run next
// to each other within a round, so a host that slows down or speeds up
// between rounds (seen on the benchmark VM: 30% within a run) moves both
// sides of a round's ratio, where it can move the two medians apart.
func writeTable(w io.Writer, r io.Reader, name string) error {
	type series struct {
		secs   []float64
		rss    int
		rounds map[string]float64 // seconds by round
	}
	var order []string
	data := map[string]map[string]*series{}
	notes := map[string]string{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		fs := strings.Split(sc.Text(), "\t")
		switch {
		case len(fs) >= 3 && fs[0] == "note":
			notes[fs[1]] = strings.Join(fs[2:], " ")
			continue
		case len(fs) != 6 || fs[0] != "time":
			return fmt.Errorf("%s line %d: want time/case/who/round/seconds/rss", name, line)
		}
		c, who := fs[1], fs[2]
		sec, err := strconv.ParseFloat(fs[4], 64)
		if err != nil {
			return fmt.Errorf("%s line %d: seconds: %w", name, line, err)
		}
		rss, err := strconv.Atoi(fs[5])
		if err != nil {
			return fmt.Errorf("%s line %d: rss: %w", name, line, err)
		}
		if data[c] == nil {
			data[c] = map[string]*series{}
			order = append(order, c)
		}
		s := data[c][who]
		if s == nil {
			s = &series{rounds: map[string]float64{}}
			data[c][who] = s
		}
		s.secs = append(s.secs, sec)
		s.rss = max(s.rss, rss)
		s.rounds[fs[3]] = sec
	}
	if err := sc.Err(); err != nil {
		return err
	}
	median := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		v = slices.Clone(v)
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "| case | rounds | contactsync median s | baseline median s | ratio | round ratios: range (median) | contactsync peak RSS MB | baseline peak RSS MB | target |\n")
	fmt.Fprintf(bw, "|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, c := range order {
		cs, bl := data[c]["contactsync"], data[c]["baseline"]
		var mc float64
		rounds, rss := 0, 0
		if cs != nil {
			mc, rounds, rss = median(cs.secs), len(cs.secs), cs.rss
		}
		ratio, perRound, blS, blRSS := "-", "-", "-", "-"
		if bl != nil {
			mb := median(bl.secs)
			blS = fmt.Sprintf("%.2f", mb)
			blRSS = fmt.Sprintf("%.0f", float64(bl.rss)/1024)
			if mb > 0 && cs != nil {
				ratio = fmt.Sprintf("%.2fx", mc/mb)
			}
			var rs []float64
			if cs != nil {
				for round, sec := range cs.rounds {
					if b, ok := bl.rounds[round]; ok && b > 0 {
						rs = append(rs, sec/b)
					}
				}
			}
			if len(rs) > 0 {
				perRound = fmt.Sprintf("%.2f-%.2fx (%.2fx)", slices.Min(rs), slices.Max(rs), median(rs))
			}
		}
		fmt.Fprintf(bw, "| %s | %d | %.2f | %s | %s | %s | %.0f | %s | %s |\n", c, rounds, mc, blS, ratio, perRound, float64(rss)/1024, blRSS, notes[c])
	}
	return bw.Flush()
}
