package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Lock takes an exclusive, non-blocking lock on path + ".lock", so that a
// second daemon or sync on the same state file refuses to start instead of
// racing the first one. The holder's pid is written into the lock file for
// the message the second process prints. The lock goes with the process:
// after a crash, the next process takes it without any clean-up.
//
// The lock file is left in place on release: removing it would let two
// processes hold locks on two different files of the same name.
func Lock(path string) (release func() error, err error) {
	name := path + ".lock"
	if dir := filepath.Dir(name); dir != "" {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("state: lock %s: %w", name, err)
			}
		}
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: lock %s: %w", name, err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := readPID(f)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("state: %s is in use by another contactsync process (pid %s)", path, holder)
		}
		return nil, fmt.Errorf("state: lock %s: %w", name, err)
	}
	if err := writePID(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("state: lock %s: %w", name, err)
	}
	released := false
	return func() error {
		if released {
			return nil
		}
		released = true
		// Closing the file drops the lock.
		if err := f.Close(); err != nil {
			return fmt.Errorf("state: unlock %s: %w", name, err)
		}
		return nil
	}, nil
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return err
	}
	return f.Sync()
}

// readPID returns the pid the holder wrote, or "unknown" when it has not
// written it yet.
func readPID(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	s := strings.TrimSpace(string(b[:n]))
	if _, err := strconv.Atoi(s); err != nil {
		return "unknown"
	}
	return s
}
