// Package systemd holds contactsync's unit files: contactsync.service (the
// daemon, Type=notify with a watchdog, hardened), the contactsync-sync@.service
// and contactsync-sync@.timer pair for operators who schedule jobs with
// systemd timers, and a sysusers.d file for the contactsync user. Its test
// checks them with systemd-analyze where it is installed. See docs/daemon.md.
package systemd
