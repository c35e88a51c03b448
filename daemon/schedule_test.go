package daemon

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	tests := []struct {
		spec    string
		from    time.Time
		want    time.Time
		wantErr string
	}{
		{spec: "0 2 * * *", from: t0, want: at("02:00")},
		{spec: "@daily", from: t0.Add(time.Minute), want: at("24:00")},
		{spec: "@every 15m", from: t0, want: at("00:15")},
		{spec: "CRON_TZ=Europe/Paris 0 2 * * *", from: t0, want: at("01:00")},
		{spec: "TZ=America/New_York 0 2 * * 1-5", from: t0, want: time.Date(2025, 3, 3, 7, 0, 0, 0, time.UTC)},
		{spec: "", wantErr: "empty schedule"},
		{spec: "0 2 * *", wantErr: "expected exactly 5 fields"},
		{spec: "0 0 0 2 * *", wantErr: "expected exactly 5 fields"},
		{spec: "61 * * * *", wantErr: "above maximum"},
		{spec: "CRON_TZ=Mars/Olympus 0 2 * * *", wantErr: "provided bad location"},
		// robfig/cron panics on these (found by FuzzConfigLoad).
		{spec: "CRON_TZ=", wantErr: "time zone prefix"},
		{spec: "TZ=UTC", wantErr: "time zone prefix"},
		{spec: "0 0 30 2 *", wantErr: "never fires"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := ParseSchedule(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(tt.from); !got.Equal(tt.want) {
				t.Errorf("Next(%v) = %v, want %v", tt.from, got, tt.want)
			}
		})
	}
}

func TestLateAfter(t *testing.T) {
	fri := time.Date(2025, 2, 28, 2, 5, 0, 0, time.UTC)
	tests := []struct {
		name string
		spec string
		ref  time.Time
		want time.Time
	}{
		{"every", "@every 15m", t0, at("00:30")},
		{"daily, after the run", "0 2 * * *", at("02:05"), at("50:05")},
		{"weekdays after a Friday run", "0 2 * * 1-5", fri, time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSchedule(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := lateAfter(s, tt.ref); !got.Equal(tt.want) {
				t.Errorf("lateAfter = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSystemdWatchdog(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "300000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if got := SystemdWatchdog(); got != 150*time.Second {
		t.Errorf("SystemdWatchdog = %v, want 2m30s", got)
	}
	tests := []struct {
		name string
		opts Options
		want time.Duration
	}{
		{"from systemd", Options{Notify: func(string) error { return nil }}, 150 * time.Second},
		{"explicit", Options{Notify: func(string) error { return nil }, Watchdog: time.Minute}, time.Minute},
		{"off", Options{Notify: func(string) error { return nil }, Watchdog: -1}, -1},
		{"no systemd", Options{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.opts).opts.Watchdog; got != tt.want {
				t.Errorf("Watchdog = %v, want %v", got, tt.want)
			}
		})
	}
}
