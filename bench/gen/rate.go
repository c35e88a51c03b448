package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"time"
)

// rate reads the request log of webex-simulator (slog text lines with
// time= and path=) and prints the bulk calls per second from the first call
// to the last, and the most calls seen in any one-second window.
func rate(files []string) error {
	var out []string
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		var ts []time.Time
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, "/contacts/bulk ") || !strings.HasPrefix(line, "time=") {
				continue
			}
			v, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				f.Close()
				return fmt.Errorf("%s: %w", name, err)
			}
			ts = append(ts, t)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return err
		}
		if len(ts) < 2 {
			return fmt.Errorf("%s: fewer than two bulk calls", name)
		}
		most, j := 0, 0
		for i := range ts {
			for ts[i].Sub(ts[j]) >= time.Second {
				j++
			}
			most = max(most, i-j+1)
		}
		d := ts[len(ts)-1].Sub(ts[0]).Seconds()
		out = append(out, fmt.Sprintf("%.1f/s (most in 1 s: %d)", float64(len(ts)-1)/d, most))
	}
	fmt.Println(strings.Join(out, ", "))
	return nil
}
