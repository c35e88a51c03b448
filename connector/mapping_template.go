package connector

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// mappingFuncs are the helpers a mapping template may call; docs/mapping.md
// documents them. Arguments come last so that they work in pipelines:
// {{.title | default "Supplier"}}.
var mappingFuncs = template.FuncMap{
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"title": func(s string) string { return cases.Title(language.Und).String(s) },
	"trim":  strings.TrimSpace,
	"default": func(def, s string) string {
		if strings.TrimSpace(s) == "" {
			return def
		}
		return s
	},
	// join leaves out empty values, so that a missing middle name does not
	// leave a double separator.
	"join": func(sep string, vals ...string) string {
		var b strings.Builder
		for _, v := range vals {
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			if b.Len() > 0 {
				b.WriteString(sep)
			}
			b.WriteString(v)
		}
		return b.String()
	},
	"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
}

// tmpl is one compiled template. Templates made only of text and direct
// attribute reads ({{.x}}, {{index . "x"}}) are evaluated from parts by
// direct lookup; any other goes through text/template (slow).
type tmpl struct {
	parts []part
	slow  *template.Template
}

// constant returns the text of a template that reads nothing.
func (t *tmpl) constant() (string, bool) {
	switch {
	case t.slow != nil:
		return "", false
	case len(t.parts) == 0:
		return "", true
	case len(t.parts) == 1 && t.parts[0].attr < 0:
		return t.parts[0].text, true
	}
	return "", false
}

// part is literal text (attr < 0) or the value of Mapping.attrs[attr].
type part struct {
	text string
	attr int
}

// mappingBuilder collects compiled templates into a Mapping. A nil builder
// only parses, for Validate.
type mappingBuilder struct {
	m         *Mapping
	attrIndex map[string]int
	names     []string
}

// parse compiles src, the template at YAML key name.
func (b *mappingBuilder) parse(name, src string) (*tmpl, error) {
	t, err := template.New(name).Funcs(mappingFuncs).Option("missingkey=zero").Parse(src)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, nil
	}
	a := analysis{}
	if len(t.Templates()) > 1 {
		// {{define}} and {{block}} bodies may receive anything as dot.
		a.all = true
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Tree.Root != nil {
			a.node(tt.Tree.Root, true)
		}
	}
	b.names = append(b.names, a.names...)
	if a.all {
		b.m.all = true
	}
	if parts, ok := b.fastParts(t); ok {
		return &tmpl{parts: parts}, nil
	}
	b.m.anySlow = true
	return &tmpl{slow: t}, nil
}

func (b *mappingBuilder) setField(f Field, t *tmpl) {
	if b != nil && t != nil {
		b.m.fields[f] = t
	}
}

func (b *mappingBuilder) addPhone(t *tmpl, typ string) {
	if b != nil && t != nil {
		b.m.phones = append(b.m.phones, compiledPhone{t: t, typ: typ})
	}
}

func (b *mappingBuilder) addGroup(t *tmpl) {
	if b != nil && t != nil {
		b.m.groups = append(b.m.groups, t)
	}
}

func (b *mappingBuilder) finish() {
	slices.Sort(b.names)
	b.m.names = slices.Compact(b.names)
}

// fastParts turns a template made only of text and direct attribute reads
// into parts (the names were already lower-cased by the analysis).
func (b *mappingBuilder) fastParts(t *template.Template) ([]part, bool) {
	if len(t.Templates()) != 1 || t.Tree == nil || t.Tree.Root == nil {
		return nil, false
	}
	var parts []part
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			if k := len(parts) - 1; k >= 0 && parts[k].attr < 0 {
				parts[k].text += string(n.Text)
			} else {
				parts = append(parts, part{text: string(n.Text), attr: -1})
			}
		case *parse.ActionNode:
			name, ok := directRead(n.Pipe)
			if !ok {
				return nil, false
			}
			a, seen := b.attrIndex[name]
			if !seen {
				a = len(b.m.attrs)
				b.attrIndex[name] = a
				b.m.attrs = append(b.m.attrs, name)
			}
			parts = append(parts, part{attr: a})
		default:
			return nil, false
		}
	}
	return parts, true
}

// directRead recognises {{.x}}, {{$.x}} and {{index . "x"}}.
func directRead(p *parse.PipeNode) (string, bool) {
	if p == nil || len(p.Decl) != 0 || p.IsAssign || len(p.Cmds) != 1 {
		return "", false
	}
	args := p.Cmds[0].Args
	switch len(args) {
	case 1:
		switch a := args[0].(type) {
		case *parse.FieldNode:
			if len(a.Ident) == 1 {
				return a.Ident[0], true
			}
		case *parse.VariableNode:
			if len(a.Ident) == 2 && a.Ident[0] == "$" {
				return a.Ident[1], true
			}
		}
	case 3:
		id, ok := args[0].(*parse.IdentifierNode)
		key, isStr := args[2].(*parse.StringNode)
		if ok && id.Ident == "index" && isStr && isRecordRef(args[1], true) {
			return key.Text, true
		}
	}
	return "", false
}

// isRecordRef reports whether n denotes the record itself: dot at the top
// level, or $ anywhere.
func isRecordRef(n parse.Node, dotIsRecord bool) bool {
	switch n := n.(type) {
	case *parse.DotNode:
		return dotIsRecord
	case *parse.VariableNode:
		return len(n.Ident) == 1 && n.Ident[0] == "$"
	}
	return false
}

// analysis lower-cases the attribute names a template reads, in place, so
// that they match Record.Names, and collects them. all is set when the
// record itself is used as a value ({{range .}}, {{$r := .}}, an index
// with a computed key): then any attribute may be read.
type analysis struct {
	names []string
	all   bool
}

func (a *analysis) node(n parse.Node, dot bool) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			a.node(c, dot)
		}
	case *parse.ActionNode:
		a.pipe(n.Pipe, dot)
	case *parse.IfNode:
		a.pipe(n.Pipe, dot)
		a.node(n.List, dot)
		a.node(n.ElseList, dot)
	case *parse.WithNode:
		a.pipe(n.Pipe, dot)
		a.node(n.List, false)
		a.node(n.ElseList, dot)
	case *parse.RangeNode:
		a.pipe(n.Pipe, dot)
		a.node(n.List, false)
		a.node(n.ElseList, dot)
	case *parse.TemplateNode:
		a.all = true
		a.pipe(n.Pipe, dot)
	}
}

func (a *analysis) pipe(p *parse.PipeNode, dot bool) {
	if p == nil {
		return
	}
	for _, c := range p.Cmds {
		args := c.Args
		if len(args) >= 2 {
			if id, ok := args[0].(*parse.IdentifierNode); ok && id.Ident == "index" && isRecordRef(args[1], dot) {
				if len(args) >= 3 {
					if s, ok := args[2].(*parse.StringNode); ok {
						s.Text = strings.ToLower(s.Text)
						s.Quoted = strconv.Quote(s.Text)
						a.names = append(a.names, s.Text)
						args = args[3:]
					} else {
						a.all = true
						args = args[2:]
					}
				} else {
					a.all = true
					args = args[2:]
				}
			}
		}
		for _, arg := range args {
			a.arg(arg, dot)
		}
	}
}

func (a *analysis) arg(n parse.Node, dot bool) {
	switch n := n.(type) {
	case *parse.DotNode:
		if dot {
			a.all = true
		}
	case *parse.FieldNode:
		lowerAll(n.Ident)
		if dot {
			a.names = append(a.names, n.Ident[0])
		}
	case *parse.VariableNode:
		if n.Ident[0] != "$" {
			return
		}
		if len(n.Ident) == 1 {
			a.all = true
			return
		}
		lowerAll(n.Ident[1:])
		a.names = append(a.names, n.Ident[1])
	case *parse.ChainNode:
		a.arg(n.Node, dot)
		lowerAll(n.Field)
	case *parse.PipeNode:
		a.pipe(n, dot)
	}
}

func lowerAll(ss []string) {
	for i, s := range ss {
		ss[i] = strings.ToLower(s)
	}
}

// slowState is what slow-path templates execute over: the record as a map
// of trimmed values, built once per record and only when needed.
type slowState struct {
	data map[string]string
	out  bytes.Buffer
}

// evaluator evaluates the templates of one Apply call. The record and the
// column positions are passed apart from it: pos may live on Apply's stack,
// and anything reachable from the evaluator escapes through the pool.
type evaluator struct {
	m    *Mapping
	slow *slowState
}

func fieldValue(r *Record, pos []int32, a int) string {
	p := pos[a]
	if p < 0 || int(p) >= len(r.Values) {
		return ""
	}
	return strings.TrimSpace(r.Values[p])
}

// cleanAttr is cleanValue(f, fieldValue(r, pos, a)) in one pass over the
// value when it is printable ASCII, where the only white space to trim is
// the space.
func cleanAttr(f Field, r *Record, pos []int32, a int) (string, error) {
	p := pos[a]
	if p < 0 || int(p) >= len(r.Values) {
		return "", nil
	}
	v := r.Values[p]
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f {
			return cleanValue(f, strings.TrimSpace(v))
		}
	}
	i, j := 0, len(v)
	for i < j && v[i] == ' ' {
		i++
	}
	for j > i && v[j-1] == ' ' {
		j--
	}
	return v[i:j], nil
}

// eval renders t over r for field f and cleans the result.
func (e *evaluator) eval(f Field, t *tmpl, r *Record, pos []int32) (string, error) {
	var s string
	switch {
	case t.slow != nil:
		st := e.state(r)
		st.out.Reset()
		if err := t.slow.Execute(&st.out, st.data); err != nil {
			return "", &RejectError{Field: f, Reason: err.Error()}
		}
		s = st.out.String()
	case len(t.parts) == 0:
		return "", nil
	case len(t.parts) == 1:
		if p := t.parts[0]; p.attr < 0 {
			s = p.text
		} else {
			return cleanAttr(f, r, pos, p.attr)
		}
	default:
		n := 0
		for _, p := range t.parts {
			if p.attr < 0 {
				n += len(p.text)
			} else {
				n += len(fieldValue(r, pos, p.attr))
			}
		}
		var b strings.Builder
		b.Grow(n)
		for _, p := range t.parts {
			if p.attr < 0 {
				b.WriteString(p.text)
			} else {
				b.WriteString(fieldValue(r, pos, p.attr))
			}
		}
		s = b.String()
	}
	return cleanValue(f, s)
}

func (e *evaluator) state(r *Record) *slowState {
	if e.slow != nil {
		return e.slow
	}
	st, _ := e.m.mapPool.Get().(*slowState)
	if st == nil {
		st = &slowState{data: make(map[string]string, len(r.Names))}
	}
	for i, n := range r.Names {
		n = strings.ToLower(n)
		if _, dup := st.data[n]; dup {
			continue // the first value wins, as in Record.Get
		}
		v := ""
		if i < len(r.Values) {
			v = strings.TrimSpace(r.Values[i])
		}
		st.data[n] = v
	}
	e.slow = st
	return st
}

func (e *evaluator) release() {
	if e.slow != nil {
		clear(e.slow.data)
		e.m.mapPool.Put(e.slow)
		e.slow = nil
	}
}
