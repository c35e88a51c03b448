package connector

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Problem is one configuration problem at a YAML path.
type Problem struct {
	Path    string // jobs[0].mapping.phones[1].type
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Problems is every problem found in a configuration; validation collects
// them all instead of stopping at the first.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Validator collects problems under a YAML path and resolves relative file
// names against the configuration file's folder.
type Validator struct {
	path     string
	dir      string
	problems *Problems
}

// NewValidator starts a validation of a configuration that lives in dir.
func NewValidator(dir string) *Validator {
	return &Validator{dir: dir, problems: new(Problems)}
}

// At returns a validator for the child key (or "[i]" index) of v's path.
func (v *Validator) At(key string) *Validator {
	return &Validator{path: joinPath(v.path, key), dir: v.dir, problems: v.problems}
}

// Index returns a validator for element i of v's path.
func (v *Validator) Index(i int) *Validator {
	return &Validator{path: fmt.Sprintf("%s[%d]", v.path, i), dir: v.dir, problems: v.problems}
}

// Path returns v's YAML path.
func (v *Validator) Path() string { return v.path }

// Errorf records a problem at key under v's path ("" for v's own path).
func (v *Validator) Errorf(key, format string, args ...any) {
	*v.problems = append(*v.problems, Problem{Path: joinPath(v.path, key), Message: fmt.Sprintf(format, args...)})
}

// Required records a problem when value is empty.
func (v *Validator) Required(key, value string) {
	if strings.TrimSpace(value) == "" {
		v.Errorf(key, "must be set")
	}
}

// ResolvePath makes *p absolute against the configuration file's folder.
func (v *Validator) ResolvePath(p *string) {
	if *p == "" || filepath.IsAbs(*p) {
		return
	}
	*p = filepath.Join(v.dir, *p)
}

// Err returns the problems found, or nil.
func (v *Validator) Err() error {
	if len(*v.problems) == 0 {
		return nil
	}
	return *v.problems
}

func joinPath(base, key string) string {
	switch {
	case key == "":
		return base
	case base == "":
		return key
	case strings.HasPrefix(key, "["):
		return base + key
	}
	return base + "." + key
}

// Env is what a source or sink gets when it is opened.
type Env struct {
	Job    string
	Logger *slog.Logger
	Store  Store // for parts that keep state of their own (OAuth refresh tokens are files, not state)
}

// SourceConfig is the configuration of one kind of source (source.csv,
// source.ldap). Implementations carry an example YAML block in their doc
// comment.
type SourceConfig interface {
	// Validate reports every problem under v and resolves relative paths.
	Validate(v *Validator)
	// Open makes a source. It does not connect: that happens on Pull or Check.
	Open(env Env) (Source, error)
}

// SinkConfig is the configuration of one kind of sink (sink.csv, sink.webex).
type SinkConfig interface {
	Validate(v *Validator)
	Open(env Env) (Sink, error)
}

// Secret is a value read from a file that must never be printed: it renders
// as "<secret>" in logs, errors, JSON and YAML.
type Secret string

const redacted = "<secret>"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalYAML() (any, error)    { return redacted, nil }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Format keeps %v, %s, %q and %#v from printing the value.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// Reveal returns the secret itself, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

// ErrNoSecret is returned when a secret file is empty.
var ErrNoSecret = errors.New("file is empty")

// ReadSecretFile reads a secret from path. Under systemd, a credential
// passed with LoadCredential= is found in $CREDENTIALS_DIRECTORY under the
// file's base name and is preferred to path, which the service's user may
// not be allowed to read. Trailing newlines are dropped. The error names the
// file, never its content.
func ReadSecretFile(path string) (Secret, error) {
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		cred := filepath.Join(dir, filepath.Base(path))
		if b, err := os.ReadFile(cred); err == nil {
			return secretFrom(cred, b)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			// The PathError already names the file; never add content.
			return "", fmt.Errorf("secret: %w", pe)
		}
		return "", fmt.Errorf("secret: read %s: %w", path, err)
	}
	return secretFrom(path, b)
}

func secretFrom(path string, b []byte) (Secret, error) {
	s := strings.TrimRight(string(b), "\r\n")
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("secret: %s: %w", path, ErrNoSecret)
	}
	return Secret(s), nil
}
