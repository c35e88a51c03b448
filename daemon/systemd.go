package daemon

import (
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
)

// NotifySystemd sends one sd_notify state line ("READY=1", "STOPPING=1",
// "WATCHDOG=1", "RELOADING=1", "STATUS=...").
type NotifySystemd func(state string) error

// Systemd sends a state to systemd through $NOTIFY_SOCKET. Outside systemd
// (no socket) it does nothing, so the daemon runs the same in a terminal.
func Systemd(state string) error {
	_, err := sddaemon.SdNotify(false, state)
	return err
}

// SystemdWatchdog returns how often the daemon should ping systemd's
// watchdog: half of the unit's WatchdogSec=, so that one late ping is not a
// restart; 0 when the watchdog is off or the daemon is not under systemd.
func SystemdWatchdog() time.Duration {
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}
