package csvdrop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/contactsync/contactsync/connector"
)

// Source reads a drop folder. Make one with Config.Open.
type Source struct {
	dir     string
	pattern string
	mode    string
	settle  time.Duration
	opt     readOptions
	job     string
	store   connector.Store // may be nil; only Check reads the cursor from it
	log     *slog.Logger
	now     func() time.Time
}

var (
	_ connector.Source  = (*Source)(nil)
	_ connector.Checker = (*Source)(nil)
)

// cursor is the last file read: the files after it in (mtime, name) order
// are new.
type cursor struct {
	Name   string    `json:"name"`
	MTime  time.Time `json:"mtime"`
	Size   int64     `json:"size"`
	SHA256 string    `json:"sha256"`
}

// dropFile is a matching file of the folder.
type dropFile struct {
	name    string
	mtime   time.Time
	size    int64
	growing bool // modified within the settle time
}

// after reports whether f comes after the cursor c, i.e. is new. A file
// with the same name and time but another size was rewritten in place.
func (f *dropFile) after(c *cursor) bool {
	if c == nil {
		return true
	}
	if d := f.mtime.Compare(c.MTime); d != 0 {
		return d > 0
	}
	if f.name != c.Name {
		return f.name > c.Name
	}
	return f.size != c.Size
}

func parseCursor(b []byte) (*cursor, error) {
	if len(b) == 0 {
		return nil, nil
	}
	c := new(cursor)
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("csvdrop: stored cursor is unreadable (sync --full resets it): %w", err)
	}
	return c, nil
}

// list returns the matching regular files of the folder, oldest first
// (mtime, then name). Dot files are skipped: uploaders write their partial
// files under such names.
func (s *Source) list() ([]dropFile, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("csvdrop: list drop folder: %w", err)
	}
	now := s.now()
	var files []dropFile
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if ok, _ := filepath.Match(s.pattern, name); !ok {
			continue
		}
		fi, err := os.Stat(filepath.Join(s.dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing, or a dangling link
		}
		if err != nil {
			return nil, fmt.Errorf("csvdrop: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		mt := fi.ModTime()
		files = append(files, dropFile{name: name, mtime: mt, size: fi.Size(), growing: now.Sub(mt) < s.settle})
	}
	slices.SortFunc(files, func(a, b dropFile) int {
		if d := a.mtime.Compare(b.mtime); d != 0 {
			return d
		}
		return strings.Compare(a.name, b.name)
	})
	return files, nil
}

// selectFiles picks the files a pull reads, oldest first.
func (s *Source) selectFiles(files []dropFile, cur *cursor, again bool) []dropFile {
	var picked []dropFile
	for i := range files {
		f := &files[i]
		if f.growing {
			s.log.Info("file still being written, left for the next run", "file", f.name, "mtime", f.mtime, "settle", s.settle)
			if s.mode == ModeChanges {
				// Reading a later file would move the cursor past this one.
				break
			}
			continue
		}
		if again || f.after(cur) {
			picked = append(picked, *f)
		}
	}
	if s.mode == ModeSnapshot && len(picked) > 1 {
		for _, f := range picked[:len(picked)-1] {
			if f.after(cur) {
				s.log.Info("older snapshot skipped, a newer one is read", "file", f.name, "mtime", f.mtime)
			}
		}
		picked = picked[len(picked)-1:]
	}
	return picked
}

var _ connector.IncrementalSource = (*Source)(nil)

// Incremental reports whether a pull with req hands over changes only: in
// "changes" mode, the files that came after the cursor; in "snapshot" mode,
// nothing, when no new file has come (the run then reads nothing of the
// state but the changes that wait). A file dropped between this and the
// pull makes the pull complete, which the engine copes with.
func (s *Source) Incremental(req connector.PullRequest) bool {
	if !req.FromCursor() {
		return false
	}
	if s.mode == ModeChanges {
		return true
	}
	cur, err := parseCursor(req.Cursor)
	if err != nil {
		return false // the pull says why
	}
	files, err := s.list()
	if err != nil {
		return false
	}
	for i := range files {
		if !files[i].growing && files[i].after(cur) {
			return false
		}
	}
	return true
}

// Pull reads the new files of the folder (see the package comment).
func (s *Source) Pull(ctx context.Context, req connector.PullRequest, emit connector.Emitter) (connector.PullResult, error) {
	again := req.Full || req.Peek
	cur, err := parseCursor(req.Cursor)
	if err != nil {
		if !again {
			return connector.PullResult{}, err
		}
		s.log.Warn("stored cursor ignored", "err", err)
		cur = nil
	}
	files, err := s.list()
	if err != nil {
		return connector.PullResult{}, err
	}
	picked := s.selectFiles(files, cur, again)
	if len(picked) == 0 {
		s.log.Info("no new file", "pattern", s.pattern, "matching", len(files))
		return connector.PullResult{
			NoChange: true,
			Cursor:   req.Cursor,
			Identity: fmt.Sprintf("no new file matching %q in %s", s.pattern, s.dir),
		}, nil
	}

	var ids []string
	var last *cursor
	left := req.Limit
	truncated := false
	for i := range picked {
		f := &picked[i]
		st, sum, err := s.readOne(ctx, f, left, emit)
		if err != nil {
			return connector.PullResult{}, err
		}
		if st.truncated {
			truncated = true
			ids = append(ids, fmt.Sprintf("%s (first %d records)", f.name, st.records))
			break
		}
		ids = append(ids, f.name+" sha256:"+sum)
		last = &cursor{Name: f.name, MTime: f.mtime.UTC(), Size: f.size, SHA256: sum}
		if req.Limit > 0 {
			left -= st.records
		}
	}

	res := connector.PullResult{
		Complete: s.mode == ModeSnapshot && !truncated,
		Cursor:   req.Cursor,
		Identity: strings.Join(ids, ", "),
	}
	// A peek or a cut-short preview consumes nothing; the cursor never
	// moves back (a full pull may re-read an older file after the last
	// one read was removed).
	if !req.Peek && !truncated && last != nil {
		lf := dropFile{name: last.Name, mtime: last.MTime, size: last.Size}
		if lf.after(cur) {
			b, err := json.Marshal(last)
			if err != nil {
				return connector.PullResult{}, fmt.Errorf("csvdrop: encode cursor: %w", err)
			}
			res.Cursor = b
		}
	}
	return res, nil
}

// hashingReader hashes and counts what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// readOne streams one file and returns its figures and sha256.
func (s *Source) readOne(ctx context.Context, f *dropFile, limit int, emit connector.Emitter) (fileStats, string, error) {
	start := s.now()
	fh, err := os.Open(filepath.Join(s.dir, f.name))
	if err != nil {
		return fileStats{}, "", fmt.Errorf("csvdrop: %w", err)
	}
	defer fh.Close()
	hr := &hashingReader{r: fh, h: sha256.New()}
	st, err := readFile(ctx, f.name, hr, &s.opt, limit, emit)
	if err != nil {
		return st, "", err
	}
	if st.truncated {
		return st, "", nil
	}
	// A file that changed while it was read may be a half-written
	// snapshot: reading it would delete the contacts of its missing rows.
	fi, err := fh.Stat()
	if err != nil {
		return st, "", fmt.Errorf("csvdrop: %w", err)
	}
	if hr.n != f.size || fi.Size() != f.size || !fi.ModTime().Equal(f.mtime) {
		return st, "", fmt.Errorf("csvdrop: %s changed while it was read (%d bytes listed, %d read, %d now); it is read again on the next run", f.name, f.size, hr.n, fi.Size())
	}
	sum := hex.EncodeToString(hr.h.Sum(nil))
	s.log.Info("file read", "file", f.name, "mtime", f.mtime, "bytes", f.size, "records", st.records,
		"rejected", st.rejected, "blank_rows", st.blank, "sha256", sum, "took", s.now().Sub(start))
	return st, sum, nil
}

// Check lists the folder, reads the header of its newest file, and says
// whether that file is still to be read.
func (s *Source) Check(ctx context.Context) (string, error) {
	files, err := s.list()
	if err != nil {
		return "", err
	}
	desc := fmt.Sprintf("csv %s: %d file(s) match %q", s.dir, len(files), s.pattern)
	if len(files) == 0 {
		return desc + "; no drop yet", nil
	}
	f := &files[len(files)-1]
	desc += fmt.Sprintf("; newest %s (%s, %d bytes", f.name, f.mtime.UTC().Format(time.RFC3339), f.size)
	switch {
	case f.growing:
		desc += ", still being written)"
	case s.store != nil:
		b, err := s.store.Cursor(ctx, s.job)
		if err != nil {
			return desc + ")", fmt.Errorf("csvdrop: read the job's cursor: %w", err)
		}
		cur, err := parseCursor(b)
		if err != nil {
			return desc + ")", err
		}
		if f.after(cur) {
			desc += ", unread)"
		} else {
			desc += ", already read)"
		}
	default:
		desc += ")"
	}
	fh, err := os.Open(filepath.Join(s.dir, f.name))
	if err != nil {
		return desc, fmt.Errorf("csvdrop: %w", err)
	}
	defer fh.Close()
	if _, err := openCSV(f.name, fh, &s.opt); err != nil {
		return desc, err
	}
	return desc + fmt.Sprintf("; key column %q found", s.opt.keyLabel), nil
}
