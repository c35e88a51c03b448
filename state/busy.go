package state

import (
	"errors"
	"fmt"

	"github.com/mattn/go-sqlite3"
)

// describeBusy adds to SQLite's "database is locked" what it means for a
// user: another process has held the state file's writer for the whole
// busyTimeout, and what that process may be. Other errors pass unchanged.
func describeBusy(err error) error {
	var se sqlite3.Error
	if err == nil || !errors.As(err, &se) || (se.Code != sqlite3.ErrBusy && se.Code != sqlite3.ErrLocked) {
		return err
	}
	return fmt.Errorf("%w: another process has been writing to the state file for more than %s "+
		"(a contactsync run of another configuration, or a sqlite3 shell in a transaction); try again once it is done", err, busyTimeout)
}
