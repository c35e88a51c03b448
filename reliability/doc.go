// Package reliability holds tests that attack contactsync from the outside:
// they build the real binary, run it as a subprocess against real drop
// folders, SQLite files and the Webex API simulator, kill it with SIGKILL at
// random moments, and check that what reached Control Hub in the end is what
// an uninterrupted run gives: no duplicate create, no lost update, no
// spurious delete, no orphan file. The package has no code of its own.
//
// CONTACTSYNC_CRASH_ITERATIONS sets the number of kills per test (default
// 50); CONTACTSYNC_LOAD=1 turns on the million-contact daemon load test.
package reliability
