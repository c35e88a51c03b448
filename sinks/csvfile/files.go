package csvfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// fileMode lets the service's group (an operator uploading the files) read
// the output, and nobody else: the files hold the organization's contacts.
const fileMode = 0o640

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// The file names of a run: prefix, then one of these.
const (
	importPart   = "import-"
	deleteName   = "delete.csv"
	rejectedName = "rejected.csv"
	tempMark     = ".tmp"
)

// runPrefix is the start of every file name of a run of a job.
func runPrefix(job string, runID int64) string {
	return fmt.Sprintf("%s-run%06d-", job, runID)
}

func importName(prefix string, n int) string {
	return fmt.Sprintf("%s%s%03d.csv", prefix, importPart, n)
}

// isRunFile reports whether name is a final or temporary file of the run
// with that prefix. The rest of the name must be one this package writes,
// so that job "a" never matches the files of a job named "a-run000001-x".
func isRunFile(name, prefix string) bool {
	if rest, ok := strings.CutPrefix(name, "."); ok {
		i := strings.LastIndex(rest, tempMark)
		if i < 0 {
			return false
		}
		name = rest[:i]
	}
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return false
	}
	if rest == deleteName || rest == rejectedName {
		return true
	}
	num, ok := strings.CutPrefix(rest, importPart)
	if !ok {
		return false
	}
	num, ok = strings.CutSuffix(num, ".csv")
	if !ok || len(num) < 3 {
		return false
	}
	_, err := strconv.ParseUint(num, 10, 32)
	return err == nil && num[0] != '+'
}

// RemoveRunFiles removes every output file of one run of a job from dir,
// final and temporary, and returns the paths removed. The engine calls it
// for runs that a crash left unfinished, whose files must not be uploaded.
// A missing dir is not an error.
func RemoveRunFiles(dir, job string, runID int64) ([]string, error) {
	if job == "" || strings.ContainsAny(job, `/\`) || runID <= 0 {
		return nil, fmt.Errorf("csvfile: remove run files: bad job %q or run id %d", job, runID)
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("csvfile: remove run files: %w", err)
	}
	prefix := runPrefix(job, runID)
	var removed []string
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !isRunFile(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("csvfile: remove run files: %w", err))
			continue
		}
		removed = append(removed, p)
	}
	if len(removed) > 0 {
		if err := syncDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// outFile is one output file being written under a temporary name.
type outFile struct {
	final string
	f     *os.File
	cw    *csvWriter
	rows  int
	// syncErr is why finish failed for a file a stream held.
	syncErr error
}

// createFile starts writing the file that will be named final, header first.
// The temporary name starts with a dot, so that an operator's upload glob
// (*.csv) never picks up a half-written file, and carries the final name, so
// that RemoveRunFiles finds it after a crash.
func createFile(dir, name string, bom bool, header []string) (*outFile, error) {
	f, err := os.CreateTemp(dir, "."+name+tempMark+"*")
	if err != nil {
		return nil, fmt.Errorf("csvfile: create %s: %w", name, err)
	}
	// CRLF is RFC 4180's line end and what spreadsheets on Windows expect:
	// csvWriter writes it.
	o := &outFile{final: filepath.Join(dir, name), f: f, cw: newCSVWriter(f)}
	if bom {
		o.cw.writeRaw(utf8BOM)
	}
	if err := o.cw.writeRow(header); err != nil {
		o.abort()
		return nil, fmt.Errorf("csvfile: write %s: %w", o.final, err)
	}
	return o, nil
}

func (o *outFile) write(rec []string) error {
	if err := o.cw.writeRow(rec); err != nil {
		return fmt.Errorf("csvfile: write %s row %d: %w", o.final, o.rows+1, err)
	}
	o.rows++
	return nil
}

// commit makes the file durable under its final name: flush, fsync, mode,
// rename, then fsync the folder so that the rename itself survives a crash.
// An existing file of that name is never replaced: it would belong to
// another installation writing the same job into the same outbox, and its
// contacts would be lost.
func (o *outFile) commit() error {
	if err := o.finish(); err != nil {
		return err
	}
	return o.publish()
}

// finish makes the file durable under its temporary name: flush, fsync,
// mode, close. A stream finishes its full import files during the pull, on
// a goroutine of its own; publish renames them once the run may emit.
func (o *outFile) finish() error {
	var err error
	if o.cw != nil { // nil: flushed by a stream, which dropped the buffer
		err = o.cw.flush()
	}
	if err == nil {
		err = o.f.Sync()
	}
	if err == nil {
		err = o.f.Chmod(fileMode)
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(o.f.Name())
		return fmt.Errorf("csvfile: write %s: %w", o.final, err)
	}
	return nil
}

// publish renames a finished file to its final name, then fsyncs the
// folder so that the rename itself survives a crash.
func (o *outFile) publish() error {
	if err := o.rename(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(o.final))
}

// rename gives a finished file its final name, unless a file has it.
func (o *outFile) rename() error {
	var err error
	if _, serr := os.Lstat(o.final); serr == nil {
		err = fs.ErrExist
	} else if !errors.Is(serr, fs.ErrNotExist) {
		err = serr
	}
	if err == nil {
		err = os.Rename(o.f.Name(), o.final)
	}
	if err != nil {
		_ = os.Remove(o.f.Name())
		return fmt.Errorf("csvfile: write %s: %w", o.final, err)
	}
	return nil
}

// abort drops the temporary file.
func (o *outFile) abort() {
	_ = o.f.Close()
	_ = os.Remove(o.f.Name())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("csvfile: sync %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("csvfile: sync %s: %w", dir, err)
	}
	return nil
}
