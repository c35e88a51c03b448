package main

import (
	"bufio"
	"fmt"
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
	type series struct {
		secs []float64
		rss  int
	}
	var order []string
	data := map[string]map[string]*series{}
	notes := map[string]string{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fs := strings.Split(sc.Text(), "\t")
		switch {
		case len(fs) >= 3 && fs[0] == "note":
			notes[fs[1]] = strings.Join(fs[2:], " ")
			continue
		case len(fs) != 6 || fs[0] != "time":
			return fmt.Errorf("%s line %d: want time/case/who/round/seconds/rss", args[0], line)
		}
		c, who := fs[1], fs[2]
		sec, err := strconv.ParseFloat(fs[4], 64)
		if err != nil {
			return fmt.Errorf("%s line %d: seconds: %w", args[0], line, err)
		}
		rss, err := strconv.Atoi(fs[5])
		if err != nil {
			return fmt.Errorf("%s line %d: rss: %w", args[0], line, err)
		}
		if data[c] == nil {
			data[c] = map[string]*series{}
			order = append(order, c)
		}
		s := data[c][who]
		if s == nil {
			s = &series{}
			data[c][who] = s
		}
		s.secs = append(s.secs, sec)
		s.rss = max(s.rss, rss)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	median := func(s *series) float64 {
		if s == nil || len(s.secs) == 0 {
			return 0
		}
		v := slices.Clone(s.secs)
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "| case | rounds | contactsync median s | baseline median s | ratio | contactsync peak RSS MB | baseline peak RSS MB | target |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, c := range order {
		cs, bl := data[c]["contactsync"], data[c]["baseline"]
		mc, mb := median(cs), median(bl)
		ratio, blS, blRSS := "-", "-", "-"
		if bl != nil {
			blS = fmt.Sprintf("%.2f", mb)
			blRSS = fmt.Sprintf("%.0f", float64(bl.rss)/1024)
			if mb > 0 {
				ratio = fmt.Sprintf("%.2fx", mc/mb)
			}
		}
		rounds, rss := 0, 0
		if cs != nil {
			rounds, rss = len(cs.secs), cs.rss
		}
		fmt.Fprintf(w, "| %s | %d | %.2f | %s | %s | %.0f | %s | %s |\n", c, rounds, mc, blS, ratio, float64(rss)/1024, blRSS, notes[c])
	}
	return w.Flush()
}
