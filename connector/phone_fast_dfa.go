package connector

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
)

// digitDFA runs one of phonenumbers' metadata patterns over a string of
// ASCII digits, the only input fastE164 hands its matchers, as a table
// lookup per digit. Go's regexp spends 80-150 ns per match on these short
// numbers (machine pools, onepass or backtracking set-up), ten times more
// than the table walk, and fastValid matches up to eleven descriptions per
// number.
//
// The table is the subset construction of the very program regexp runs
// (syntax.Parse with syntax.Perl, Simplify, syntax.Compile), following its
// pike VM step by step: the same closure order, the same empty-width
// conditions (computed with syntax.EmptyOpContext, so that \b or $ mean
// what they mean in regexp) and, for an ordered DFA, the same cut of
// lower-priority threads at a match. An ordered DFA therefore reports the
// end regexp's leftmost-first semantics choose for a match starting at 0;
// an unordered one only whether a match exists, with far fewer states.
//
// As the empty-width conditions of a position depend on whether a digit is
// the last one, each digit is two input symbols.
type digitDFA struct {
	// trans[state*dfaSyms+sym] is next<<1 | 1 if a thread of next
	// reached Match. State 0 has no thread left; state 1 is the start.
	trans []uint32
	// acc[state]: a thread of the state reached Match.
	acc []bool
	// startMatch: the pattern matches the empty prefix of a non-empty
	// input.
	startMatch bool
}

const (
	dfaSyms = 20 // 10 digits, each as "more follow" or "last"
	// dfaMaxStates bounds a table (dfaMaxStates*dfaSyms*4 bytes); a
	// pattern that needs more keeps its regexp.
	dfaMaxStates = 4096
)

// compileDigitDFA compiles expr as regexp.Compile would and builds its
// table. ok is false when the program uses what the construction does not
// model, or needs too many states: the caller then keeps the regexp.
func compileDigitDFA(expr string, ordered bool) (*digitDFA, bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, false
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, false
	}
	b := &dfaBuilder{prog: prog, ordered: ordered, ids: map[string]uint32{}, visited: make([]bool, len(prog.Inst))}
	b.state(nil) // 0: dead
	start := b.closure(nil, uint32(prog.Start), syntax.EmptyOpContext(-1, '0'))
	b.state(start)
	d := &digitDFA{startMatch: b.hasMatch(start)}
	for s := 0; s < len(b.states); s++ {
		if len(b.states) > dfaMaxStates {
			return nil, false
		}
		for sym := 0; sym < dfaSyms; sym++ {
			c := rune('0' + sym/2)
			next := rune('0')
			if sym%2 == 1 {
				next = -1
			}
			leaves := b.step(b.states[s], c, syntax.EmptyOpContext(c, next))
			id := b.state(leaves)
			v := id << 1
			if b.hasMatch(leaves) {
				v |= 1
			}
			d.trans = append(d.trans, v)
		}
	}
	if len(b.states) > dfaMaxStates {
		return nil, false
	}
	for _, leaves := range b.states {
		d.acc = append(d.acc, b.hasMatch(leaves))
	}
	return d, true
}

type dfaBuilder struct {
	prog    *syntax.Prog
	ordered bool
	ids     map[string]uint32
	states  [][]uint32 // the leaf instructions (Match, Rune*) of each state
	visited []bool
}

// state returns the id of the state made of leaves, adding it if new.
func (b *dfaBuilder) state(leaves []uint32) uint32 {
	if !b.ordered {
		slices.Sort(leaves)
	}
	var k strings.Builder
	for _, pc := range leaves {
		k.WriteRune(rune(pc) + 1) // valid runes: programs are far shorter than 0xD800
	}
	if id, ok := b.ids[k.String()]; ok {
		return id
	}
	id := uint32(len(b.states))
	b.ids[k.String()] = id
	b.states = append(b.states, leaves)
	return id
}

func (b *dfaBuilder) hasMatch(leaves []uint32) bool {
	for _, pc := range leaves {
		if b.prog.Inst[pc].Op == syntax.InstMatch {
			return true
		}
	}
	return false
}

// closure is the pike VM's add for one new queue: it starts a fresh
// visited set.
func (b *dfaBuilder) closure(leaves []uint32, pc uint32, cond syntax.EmptyOp) []uint32 {
	clear(b.visited)
	return b.add(leaves, pc, cond)
}

// add follows the pike VM's add: every instruction is visited once per
// queue, the first path to reach it wins, Out before Arg.
func (b *dfaBuilder) add(leaves []uint32, pc uint32, cond syntax.EmptyOp) []uint32 {
	if pc == 0 || b.visited[pc] {
		// pc 0 is InstFail in every compiled program.
		return leaves
	}
	b.visited[pc] = true
	i := &b.prog.Inst[pc]
	switch i.Op {
	case syntax.InstAlt, syntax.InstAltMatch:
		leaves = b.add(leaves, i.Out, cond)
		leaves = b.add(leaves, i.Arg, cond)
	case syntax.InstEmptyWidth:
		if syntax.EmptyOp(i.Arg)&^cond == 0 {
			leaves = b.add(leaves, i.Out, cond)
		}
	case syntax.InstNop, syntax.InstCapture:
		leaves = b.add(leaves, i.Out, cond)
	case syntax.InstMatch, syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
		leaves = append(leaves, pc)
	}
	return leaves
}

// step is the pike VM's step over the digit c, with cond the empty-width
// context of the position after it.
func (b *dfaBuilder) step(leaves []uint32, c rune, cond syntax.EmptyOp) []uint32 {
	clear(b.visited)
	var next []uint32
	for _, pc := range leaves {
		i := &b.prog.Inst[pc]
		ok := false
		switch i.Op {
		case syntax.InstMatch:
			if b.ordered {
				return next // leftmost-first: lower-priority threads are cut
			}
		case syntax.InstRune:
			ok = i.MatchRune(c)
		case syntax.InstRune1:
			ok = c == i.Rune[0]
		case syntax.InstRuneAny:
			ok = true
		case syntax.InstRuneAnyNotNL:
			ok = c != '\n'
		}
		if ok {
			next = b.add(next, i.Out, cond)
		}
	}
	return next
}

// scan walks s. It returns the end of the first match when first is set,
// else of the last one (for an ordered DFA, the end regexp reports for a
// match at 0), -1 without a match, and -2 when s is empty or holds other
// than ASCII digits: the caller asks the regexp.
func (d *digitDFA) scan(s string, first bool) int {
	if len(s) == 0 {
		return -2
	}
	// The table assumes digits all along: the empty-width context of a
	// digit depends on what follows it.
	for i := 0; i < len(s); i++ {
		if s[i]-'0' > 9 {
			return -2
		}
	}
	end := -1
	if d.startMatch {
		if first {
			return 0
		}
		end = 0
	}
	st := uint32(1)
	last := len(s) - 1
	for i := 0; i < len(s); i++ {
		sym := uint32(s[i]-'0') * 2
		if i == last {
			sym++
		}
		v := d.trans[st*dfaSyms+sym]
		st = v >> 1
		if v&1 != 0 {
			end = i + 1
			if first {
				return end
			}
		}
		if st == 0 {
			break
		}
	}
	return end
}

// digitMatcher is a metadata pattern compiled both ways: the table for
// digit strings, the regexp for anything else (and for patterns without a
// table).
type digitMatcher struct {
	dfa *digitDFA
	re  *regexp.Regexp
}

// newDigitMatcher compiles expr, which the caller has anchored as the
// regexp use it replaces requires. ordered is needed when the match end
// matters (leftmost-first), not only whether there is a match.
func newDigitMatcher(expr string, ordered bool) (*digitMatcher, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	m := &digitMatcher{re: re}
	if d, ok := compileDigitDFA(expr, ordered); ok {
		m.dfa = d
	}
	return m, nil
}

// match is re.MatchString(s).
func (m *digitMatcher) match(s string) bool {
	if m.dfa != nil {
		if e := m.dfa.scan(s, true); e != -2 {
			return e >= 0
		}
	}
	// A copy keeps s on the caller's stack: regexp's machines retain
	// their input.
	return m.re.MatchString(strings.Clone(s))
}

// prefixEnd is the end of re.FindStringIndex(s) when that match starts at
// 0, else -1. It needs an ordered table.
func (m *digitMatcher) prefixEnd(s string) int {
	if m.dfa != nil {
		if e := m.dfa.scan(s, false); e != -2 {
			return e
		}
	}
	loc := m.re.FindStringIndex(strings.Clone(s))
	if loc == nil || loc[0] != 0 {
		return -1
	}
	return loc[1]
}

// productDFA walks several full-match tables (patterns of the form
// ^(?:X)$) at once: its states are the tuples of their states, and a state
// reached by the last digit tells which patterns match. A phoneTypes
// matches a number against eleven descriptions; one walk instead of eleven
// is most of what fastValid saves.
type productDFA struct {
	trans []uint32 // state*dfaSyms+sym -> next state; 0: every part dead
	acc   []uint16 // per state: the parts whose pattern matched
}

// maxProductStates bounds a product table; beyond it the parts are walked
// one by one.
const maxProductStates = 8192

// newProductDFA builds the product of at most 16 full-match tables. ok is
// false when a part matches the empty prefix (not a full-match pattern) or
// the product is too large.
func newProductDFA(parts []*digitDFA) (*productDFA, bool) {
	if len(parts) > 16 {
		return nil, false
	}
	for _, d := range parts {
		if d == nil || d.startMatch {
			return nil, false
		}
	}
	ids := map[string]uint32{}
	var tuples [][]uint32
	key := make([]byte, 0, 4*len(parts))
	state := func(t []uint32) uint32 {
		key = key[:0]
		for _, s := range t {
			key = append(key, byte(s), byte(s>>8), byte(s>>16), byte(s>>24))
		}
		if id, ok := ids[string(key)]; ok {
			return id
		}
		id := uint32(len(tuples))
		ids[string(key)] = id
		tuples = append(tuples, t)
		return id
	}
	state(make([]uint32, len(parts))) // 0: dead
	start := make([]uint32, len(parts))
	for i := range start {
		start[i] = 1
	}
	state(start)
	p := &productDFA{}
	for s := 0; s < len(tuples); s++ {
		if len(tuples) > maxProductStates {
			return nil, false
		}
		for sym := uint32(0); sym < dfaSyms; sym++ {
			next := make([]uint32, len(parts))
			for i, d := range parts {
				next[i] = d.trans[tuples[s][i]*dfaSyms+sym] >> 1
			}
			p.trans = append(p.trans, state(next))
		}
	}
	if len(tuples) > maxProductStates {
		return nil, false
	}
	for _, t := range tuples {
		var m uint16
		for i, d := range parts {
			if d.acc[t[i]] {
				m |= 1 << i
			}
		}
		p.acc = append(p.acc, m)
	}
	return p, true
}

// matches returns the set of parts that match s in full (bit i for part
// i); ok is false when s is empty or holds other than ASCII digits.
func (p *productDFA) matches(s string) (mask uint16, ok bool) {
	if len(s) == 0 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i]-'0' > 9 {
			return 0, false
		}
	}
	st := uint32(1)
	last := len(s) - 1
	for i := 0; i < len(s); i++ {
		sym := uint32(s[i]-'0') * 2
		if i == last {
			sym++
		}
		if st = p.trans[st*dfaSyms+sym]; st == 0 {
			return 0, true
		}
	}
	return p.acc[st], true
}
