package connector

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// regexpPrefixEnd is what digitMatcher.prefixEnd must return.
func regexpPrefixEnd(re *regexp.Regexp, s string) int {
	loc := re.FindStringIndex(s)
	if loc == nil || loc[0] != 0 {
		return -1
	}
	return loc[1]
}

// checkMatcher compares a matcher built from expr with regexp on inputs.
func checkMatcher(t *testing.T, expr string, inputs []string) {
	t.Helper()
	re := regexp.MustCompile(expr)
	for _, ordered := range []bool{false, true} {
		m, err := newDigitMatcher(expr, ordered)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		for _, s := range inputs {
			if got, want := m.match(s), re.MatchString(s); got != want && strings.HasPrefix(expr, "^") {
				t.Errorf("%q ordered=%v: match(%q) = %v, regexp %v", expr, ordered, s, got, want)
			}
			if !ordered {
				continue
			}
			if got, want := m.prefixEnd(s), regexpPrefixEnd(re, s); got != want {
				t.Errorf("%q: prefixEnd(%q) = %d, regexp %d", expr, s, got, want)
			}
		}
	}
}

func TestDigitMatcher(t *testing.T) {
	inputs := []string{"", "0", "1", "00", "01", "10", "001", "0011", "011", "0110", "1800200", "180020", "0180020",
		"123456789", "0123456789", "33123456789", "12a", "a12", "0 1", "٠١", "99999999999999999"}
	tests := []struct {
		name string
		expr string
	}{
		{"full", `^(?:[1-9]\d{8})$`},
		{"full alternation", `^(?:[1-357-9]\d{9}|[18]\d{8}|8\d{6})$`},
		{"prefix", `^(?:0|180020)`},
		{"prefix leftmost-first short first", `^(?:0|01|011)`},
		{"prefix leftmost-first long first", `^(?:011|01|0)`},
		{"prefix lazy", `^(?:0\d*?1)`},
		{"prefix greedy", `^(?:0\d*1)`},
		{"unanchored idd", `00`},
		{"unanchored idd alternation", `0(?:0|11)|1`},
		{"unanchored empty match", `\d*`},
		{"unanchored optional", `0?0?`},
		{"word boundary", `^(?:\d+\b)`},
		{"no word boundary", `^(?:\d\B\d)`},
		{"end in the middle", `^(?:0$|01)`},
		{"captures", `^(?:0(1)?(2)?)`},
		{"letters", `^(?:a|0)`},
		{"case folding", `(?i)^(?:a|1)`},
		{"never", `^(?:[^\d])`},
		{"empty", `^(?:)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkMatcher(t, tt.expr, inputs)
		})
	}
}

// TestDigitDFAStateBound: a pattern whose table would exceed the bound
// keeps its regexp, and still matches as regexp does.
func TestDigitDFAStateBound(t *testing.T) {
	tests := []struct {
		name  string
		expr  string
		table bool
	}{
		{"small", `^(?:\d*1\d{3})$`, true},
		{"exponential", `^(?:\d*1\d{14})$`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newDigitMatcher(tt.expr, false)
			if err != nil {
				t.Fatal(err)
			}
			if (m.dfa != nil) != tt.table {
				t.Fatalf("table built: %v, want %v", m.dfa != nil, tt.table)
			}
			checkMatcher(t, tt.expr, []string{"1000000000000000", "0100000000000000", "1234", "0000"})
		})
	}
}

// metadataSamples returns digit strings near a metadata's example numbers:
// the examples, their prefixes, and random mutations.
func metadataSamples(m *phonenumbers.PhoneMetadata, rnd *rand.Rand) []string {
	descs := []*phonenumbers.PhoneNumberDesc{
		m.GetGeneralDesc(), m.GetPremiumRate(), m.GetTollFree(), m.GetSharedCost(), m.GetVoip(),
		m.GetPersonalNumber(), m.GetPager(), m.GetUan(), m.GetVoicemail(), m.GetFixedLine(), m.GetMobile(),
	}
	var out []string
	for _, d := range descs {
		ex := d.GetExampleNumber()
		if ex == "" {
			continue
		}
		for _, s := range []string{ex, "0" + ex, m.GetNationalPrefix() + ex, "00" + ex, "011" + ex, "1" + ex} {
			for i := 1; i <= len(s); i++ {
				out = append(out, s[:i])
			}
			for range 8 {
				b := []byte(s)
				b[rnd.IntN(len(b))] = byte('0' + rnd.IntN(10))
				out = append(out, string(b), string(b)+string(rune('0'+rnd.IntN(10))))
			}
		}
	}
	for range 40 {
		b := make([]byte, 1+rnd.IntN(17))
		for i := range b {
			b[i] = byte('0' + rnd.IntN(10))
		}
		out = append(out, string(b))
	}
	return out
}

// TestDigitMatchersAgainstMetadata builds the tables of every pattern of
// every region's metadata, as fastE164 uses them, and compares them with
// regexp on numbers near the metadata's examples; it also checks the
// product walk of phoneTypes.known against the descriptions one by one.
func TestDigitMatchersAgainstMetadata(t *testing.T) {
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	noTable, noProduct := 0, 0
	for _, m := range coll.GetMetadata() {
		t.Run(m.GetId()+"/"+strconv.Itoa(int(m.GetCountryCode())), func(t *testing.T) {
			samples := metadataSamples(m, rnd)
			exprs := []struct {
				expr    string
				ordered bool
			}{
				{m.GetInternationalPrefix(), true},
				{"^(?:" + m.GetGeneralDesc().GetNationalNumberPattern() + ")$", false},
			}
			if p := m.GetNationalPrefixForParsing(); p != "" {
				exprs = append(exprs, struct {
					expr    string
					ordered bool
				}{"^(?:" + p + ")", true})
			}
			if ld := m.GetLeadingDigits(); ld != "" {
				exprs = append(exprs, struct {
					expr    string
					ordered bool
				}{"^(?:" + ld + ")", false})
			}
			for _, e := range exprs {
				if e.expr == "" {
					continue
				}
				dm, err := newDigitMatcher(e.expr, e.ordered)
				if err != nil {
					t.Fatal(err)
				}
				if dm.dfa == nil {
					noTable++
				}
				checkMatcher(t, e.expr, samples)
			}
			types := newPhoneTypes(m)
			if types == nil {
				return
			}
			for _, d := range []*phoneDesc{&types.general, &types.others[0], &types.others[1], &types.others[2],
				&types.others[3], &types.others[4], &types.others[5], &types.others[6], &types.others[7], &types.fixed, &types.mobile} {
				checkMatcher(t, d.re.re.String(), samples)
			}
			if types.all == nil {
				noProduct++
				return
			}
			oneByOne := *types
			oneByOne.all = nil
			for _, s := range samples {
				if got, want := types.known(s), oneByOne.known(s); got != want {
					t.Errorf("known(%q) = %v, one by one %v", s, got, want)
				}
			}
		})
	}
	t.Logf("%d metadata, %d patterns without a table, %d without a product table", len(coll.GetMetadata()), noTable, noProduct)
}

// metadataPatterns lists every pattern fastE164 compiles into a table,
// anchored as it anchors them, with whether the table is ordered.
func metadataPatterns(t testing.TB) []struct {
	expr    string
	ordered bool
} {
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		t.Fatal(err)
	}
	var out []struct {
		expr    string
		ordered bool
	}
	add := func(expr string, ordered bool) {
		if expr != "" && expr != "^(?:)" && expr != "^(?:)$" {
			out = append(out, struct {
				expr    string
				ordered bool
			}{expr, ordered})
		}
	}
	for _, m := range coll.GetMetadata() {
		add(m.GetInternationalPrefix(), true)
		if p := m.GetNationalPrefixForParsing(); p != "" {
			add("^(?:"+p+")", true)
		}
		if ld := m.GetLeadingDigits(); ld != "" {
			add("^(?:"+ld+")", false)
		}
		for _, d := range []*phonenumbers.PhoneNumberDesc{
			m.GetGeneralDesc(), m.GetPremiumRate(), m.GetTollFree(), m.GetSharedCost(), m.GetVoip(),
			m.GetPersonalNumber(), m.GetPager(), m.GetUan(), m.GetVoicemail(), m.GetFixedLine(), m.GetMobile(),
		} {
			if d != nil && d.GetNationalNumberPattern() != "" {
				add("^(?:"+d.GetNationalNumberPattern()+")$", false)
			}
		}
	}
	return out
}

// FuzzDigitMatcher compares the tables of phonenumbers' patterns with
// regexp on arbitrary input: match for anchored patterns, and the match
// end of ordered tables.
func FuzzDigitMatcher(f *testing.F) {
	pats := metadataPatterns(f)
	matchers := make([]*digitMatcher, len(pats))
	for _, s := range []string{"0", "00", "011", "0123456789", "33123456789", "180020123", "8101234", "0011441234", "12a4"} {
		f.Add(s, uint16(0))
		f.Add(s, uint16(1234))
	}
	f.Fuzz(func(t *testing.T, s string, idx uint16) {
		i := int(idx) % len(pats)
		p := pats[i]
		if matchers[i] == nil {
			m, err := newDigitMatcher(p.expr, p.ordered)
			if err != nil {
				t.Fatal(err)
			}
			matchers[i] = m
		}
		m := matchers[i]
		if strings.HasPrefix(p.expr, "^") {
			if got, want := m.match(s), m.re.MatchString(s); got != want {
				t.Fatalf("%q: match(%q) = %v, regexp %v", p.expr, s, got, want)
			}
		}
		if p.ordered {
			if got, want := m.prefixEnd(s), regexpPrefixEnd(m.re, s); got != want {
				t.Fatalf("%q: prefixEnd(%q) = %d, regexp %d", p.expr, s, got, want)
			}
		}
	})
}
