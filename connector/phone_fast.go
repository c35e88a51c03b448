package connector

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nyaruka/phonenumbers"
)

// fastE164 is phonenumbers.Parse + IsValidNumber + Format(E164) for the
// common shape of directory numbers: ASCII digits, an optional leading '+'
// and the separators space . - ( ) /. It follows parseHelper step by step
// but skips what cannot apply to that shape (RFC 3966, extensions, letters,
// unicode digits), which is where Parse spends most of its time: the
// extension regexps alone are ~40% of it. It reports ok only for a valid
// number; every other input, and every branch it does not replicate,
// returns ok=false so that normalizePhoneSlow decides, error text included.
func fastE164(v, region string) (string, bool) {
	// parseHelper rejects inputs longer than MAX_INPUT_STRING_LENGTH.
	if len(v) > 250 {
		return "", false
	}
	var buf [24]byte
	digits := buf[:0]
	plus := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			if len(digits) == len(buf) {
				return "", false // far too long for any valid number
			}
			digits = append(digits, c)
		case c == '+' && i == 0:
			plus = true
		case c == ' ' || c == '.' || c == '-' || c == '(' || c == ')' || c == '/':
		default:
			return "", false
		}
	}
	// With three digits or more, the extracted number (first '+' or digit
	// to last digit) is viable; with fewer it never is, or only without
	// separators: leave both to the slow path. No extension pattern can
	// match digits and these separators.
	if len(digits) < 3 {
		return "", false
	}
	region = strings.ToUpper(region)
	var def *phoneMeta
	if region != "" {
		if def = phoneMetaForRegion(region); def == nil {
			return "", false // unknown region: checkRegionForParsing
		}
	} else if !plus {
		return "", false
	}

	d := string(digits)
	cc := 0
	var nat string
	international := plus
	full := d
	if !plus {
		// maybeStripInternationalPrefixAndNormalize: an IDD at the start,
		// unless a 0 follows it.
		if e := def.idd.prefixEnd(d); e >= 0 && (e == len(d) || d[e] != '0') {
			international = true
			full = d[e:]
		}
	}
	if international {
		if len(full) <= 2 || full[0] == '0' {
			return "", false // too short after IDD, or invalid country code (retried)
		}
		codes := phonenumbers.GetSupportedCallingCodes()
		for i := 1; i <= 3 && i <= len(full); i++ {
			c, _ := strconv.Atoi(full[:i])
			if codes[c] {
				cc, nat = c, full[i:]
				break
			}
		}
		if cc == 0 {
			return "", false
		}
	} else {
		nat = d
		if strings.HasPrefix(d, def.ccStr) {
			// The number may carry the default region's country code
			// without '+' or IDD (maybeExtractCountryCode).
			pot := def.stripNationalPrefix(d[len(def.ccStr):])
			fullValid := def.natRule.match(d)
			natValid := def.natRule.match(pot)
			l, ok := def.lengthResult(d)
			if !ok {
				return "", false
			}
			if (!fullValid && natValid) || l == phonenumbers.TOO_LONG {
				cc, nat = def.cc, pot
			}
		}
	}
	// A country code read from the number selects its main region's
	// metadata; without one the number belongs to the default region.
	meta := def
	if cc == 0 {
		cc = def.cc
	} else if phonenumbers.GetRegionCodeForCountryCode(cc) != region {
		if meta = phoneMetaForCallingCode(cc); meta == nil {
			return "", false
		}
	}
	if len(nat) < 2 {
		return "", false
	}
	pot := meta.stripNationalPrefix(nat)
	l, ok := meta.lengthResult(pot)
	if !ok {
		return "", false
	}
	if l != phonenumbers.TOO_SHORT && l != phonenumbers.IS_POSSIBLE_LOCAL_ONLY && l != phonenumbers.INVALID_LENGTH {
		nat = pot
	}
	if len(nat) < 2 || len(nat) > 17 {
		return "", false
	}
	// nat is the national significant number as Parse would store it:
	// its leading zeros become ItalianLeadingZero/NumberOfLeadingZeros and
	// GetNationalSignificantNumber gives nat back, so E.164 is "+" cc nat.
	valid, ok := fastValid(cc, nat, meta)
	if !ok || !valid {
		return "", false
	}
	return "+" + strconv.Itoa(cc) + nat, true
}

// fastValid is phonenumbers.IsValidNumber for the number +cc nsn, with the
// patterns compiled once rather than concatenated and looked up in
// phonenumbers' regexp cache on every call. ok=false means it cannot tell.
// hint, when not nil, is metadata likely to be the number's: what it holds
// spares map look-ups.
func fastValid(cc int, nsn string, hint *phoneMeta) (valid, ok bool) {
	// GetRegionCodeForNumber
	var regions []string
	if hint != nil && hint.cc == cc {
		regions = hint.regions
	} else {
		regions = phonenumbers.GetRegionCodesForCountryCode(cc)
	}
	var region string
	switch len(regions) {
	case 0:
	case 1:
		region = regions[0]
	default:
		for _, r := range regions {
			t := phoneTypesForRegion(r)
			if t == nil {
				return false, false
			}
			if t.leading != nil {
				if t.leading.match(nsn) {
					region = r
					break
				}
			} else if t.known(nsn) {
				region = r
				break
			}
		}
	}
	// IsValidNumberForRegion
	var t *phoneTypes
	if region == "001" {
		phoneMetaOnce.Do(loadPhoneMetadata)
		if m := phoneMetaNonGeo[cc]; m != nil {
			if t = phoneTypesFor(m); t == nil {
				return false, false
			}
		}
	} else if hint != nil && hint.id != "" && hint.id == region {
		// hint is the metadata of a supported region: phoneTypesForRegion
		// would find the same.
		if t = hint.types; t == nil {
			return false, false
		}
		if int(t.cc) != cc {
			return false, true
		}
	} else if region != "" && phonenumbers.GetSupportedRegions()[region] {
		if t = phoneTypesForRegion(region); t == nil {
			return false, false
		}
		if int(t.cc) != cc {
			return false, true
		}
	}
	if t == nil {
		return false, true
	}
	return t.known(nsn), true
}

// phoneDesc is a PhoneNumberDesc for isNumberMatchingDesc.
type phoneDesc struct {
	lengths []int32
	re      *digitMatcher
}

func (d *phoneDesc) match(n string) bool {
	return d.lengthOK(len(n)) && d.re.match(n)
}

// lengthOK is isNumberMatchingDesc's check of the possible lengths.
func (d *phoneDesc) lengthOK(n int) bool {
	if len(d.lengths) == 0 {
		return true
	}
	for _, l := range d.lengths {
		if int32(n) == l {
			return true
		}
	}
	return false
}

// phoneTypes holds one metadata's descriptions, in the order
// getNumberTypeHelper tries them.
type phoneTypes struct {
	cc            int32
	leading       *digitMatcher // nil without leading digits
	general       phoneDesc
	others        [8]phoneDesc // premium rate to voicemail
	fixed, mobile phoneDesc
	sameMobile    bool

	// all matches the eleven descriptions in one walk (bit 0 general,
	// 1-8 others, 9 fixed, 10 mobile); lenOK[n] has the bits of those
	// whose possible lengths allow n digits. nil: match one by one.
	all   *productDFA
	lenOK [maxNSNLen + 1]uint16
}

// maxNSNLen is the longest national significant number fastE164 passes.
const maxNSNLen = 17

// Bits of phoneTypes.all's result.
const (
	descGeneral = 1 << 0
	descOthers  = 0xff << 1
	descFixed   = 1 << 9
	descMobile  = 1 << 10
)

// known is getNumberTypeHelper(n, metadata) != UNKNOWN.
func (t *phoneTypes) known(n string) bool {
	if t.all != nil && len(n) <= maxNSNLen {
		if m, ok := t.all.matches(n); ok {
			m &= t.lenOK[len(n)]
			switch {
			case m&descGeneral == 0:
				return false
			case m&(descOthers|descFixed) != 0:
				return true
			}
			return !t.sameMobile && m&descMobile != 0
		}
	}
	if !t.general.match(n) {
		return false
	}
	for i := range t.others {
		if t.others[i].match(n) {
			return true
		}
	}
	if t.fixed.match(n) {
		return true
	}
	return !t.sameMobile && t.mobile.match(n)
}

var phoneTypesCache sync.Map // *phonenumbers.PhoneMetadata -> *phoneTypes (nil if unusable)

func phoneTypesForRegion(region string) *phoneTypes {
	phoneMetaOnce.Do(loadPhoneMetadata)
	if !phonenumbers.GetSupportedRegions()[region] {
		return nil
	}
	m := phoneMetaByID[region]
	if m == nil {
		return nil
	}
	return phoneTypesFor(m)
}

func phoneTypesFor(m *phonenumbers.PhoneMetadata) *phoneTypes {
	if t, ok := phoneTypesCache.Load(m); ok {
		return t.(*phoneTypes)
	}
	t := newPhoneTypes(m)
	phoneTypesCache.Store(m, t)
	return t
}

func newPhoneTypes(m *phonenumbers.PhoneMetadata) *phoneTypes {
	t := &phoneTypes{cc: m.GetCountryCode(), sameMobile: m.GetSameMobileAndFixedLinePattern()}
	if ld := m.GetLeadingDigits(); ld != "" {
		re, err := newDigitMatcher("^(?:"+ld+")", false)
		if err != nil {
			return nil
		}
		t.leading = re
	}
	descs := []*phonenumbers.PhoneNumberDesc{
		m.GetGeneralDesc(), m.GetPremiumRate(), m.GetTollFree(), m.GetSharedCost(), m.GetVoip(),
		m.GetPersonalNumber(), m.GetPager(), m.GetUan(), m.GetVoicemail(), m.GetFixedLine(), m.GetMobile(),
	}
	out := []*phoneDesc{&t.general, &t.others[0], &t.others[1], &t.others[2], &t.others[3],
		&t.others[4], &t.others[5], &t.others[6], &t.others[7], &t.fixed, &t.mobile}
	for i, d := range descs {
		if d == nil {
			return nil // phonenumbers would dereference it
		}
		re, err := newDigitMatcher("^(?:"+d.GetNationalNumberPattern()+")$", false)
		if err != nil {
			return nil
		}
		*out[i] = phoneDesc{lengths: d.PossibleLength, re: re}
	}
	parts := make([]*digitDFA, len(out))
	for i, d := range out {
		parts[i] = d.re.dfa
		for n := range t.lenOK {
			if d.lengthOK(n) {
				t.lenOK[n] |= 1 << i
			}
		}
	}
	if all, ok := newProductDFA(parts); ok {
		t.all = all
	}
	return t
}

// phoneMeta is what fastE164 needs from one region's (or non-geographical
// calling code's) metadata, with its regexps compiled from the same
// patterns phonenumbers uses.
type phoneMeta struct {
	meta      *phonenumbers.PhoneMetadata
	id        string // the region, "" for a non-geographical calling code
	regions   []string
	types     *phoneTypes // nil if unusable
	cc        int
	ccStr     string
	idd       *digitMatcher // unanchored, as parsePrefixAsIdd uses it
	natPrefix *digitMatcher // nil without a national prefix for parsing
	natRule   *digitMatcher
	transform string
}

var (
	phoneMetaOnce   sync.Once
	phoneMetaByID   map[string]*phonenumbers.PhoneMetadata
	phoneMetaNonGeo map[int]*phonenumbers.PhoneMetadata
	phoneMetaCache  sync.Map // region -> *phoneMetaEntry (pm nil if unusable)
	phoneMetaByCC   [1000]atomic.Pointer[phoneMetaEntry]
	// phoneMetaLast is the last region looked up: a job has one, and a
	// pointer and a string comparison cost less than sync.Map's hashing.
	phoneMetaLast atomic.Pointer[phoneMetaEntry]
)

type phoneMetaEntry struct {
	region string
	pm     *phoneMeta
}

func loadPhoneMetadata() {
	phoneMetaByID = map[string]*phonenumbers.PhoneMetadata{}
	phoneMetaNonGeo = map[int]*phonenumbers.PhoneMetadata{}
	// The collection is the one phonenumbers loaded at init.
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return
	}
	for _, m := range coll.GetMetadata() {
		if m.GetId() == "001" {
			phoneMetaNonGeo[int(m.GetCountryCode())] = m
		} else {
			phoneMetaByID[m.GetId()] = m
		}
	}
}

func phoneMetaForRegion(region string) *phoneMeta {
	if e := phoneMetaLast.Load(); e != nil && e.region == region {
		return e.pm
	}
	if e, ok := phoneMetaCache.Load(region); ok {
		phoneMetaLast.Store(e.(*phoneMetaEntry))
		return e.(*phoneMetaEntry).pm
	}
	phoneMetaOnce.Do(loadPhoneMetadata)
	var m *phonenumbers.PhoneMetadata
	if phonenumbers.GetSupportedRegions()[region] {
		m = phoneMetaByID[region]
	}
	pm := newPhoneMeta(m)
	phoneMetaCache.Store(region, &phoneMetaEntry{region: region, pm: pm})
	return pm
}

// phoneMetaForCallingCode is getMetadataForRegionOrCallingCode for the
// main region of a calling code.
func phoneMetaForCallingCode(cc int) *phoneMeta {
	if cc < 0 || cc >= len(phoneMetaByCC) {
		return nil // calling codes have at most three digits
	}
	if e := phoneMetaByCC[cc].Load(); e != nil {
		return e.pm
	}
	phoneMetaOnce.Do(loadPhoneMetadata)
	var m *phonenumbers.PhoneMetadata
	if r := phonenumbers.GetRegionCodeForCountryCode(cc); r == "001" {
		m = phoneMetaNonGeo[cc]
	} else if phonenumbers.GetSupportedRegions()[r] {
		m = phoneMetaByID[r]
	}
	pm := newPhoneMeta(m)
	phoneMetaByCC[cc].Store(&phoneMetaEntry{pm: pm})
	return pm
}

// newPhoneMeta returns nil for metadata fastE164 leaves to the slow path.
func newPhoneMeta(m *phonenumbers.PhoneMetadata) *phoneMeta {
	if m == nil || m.GetInternationalPrefix() == "" || len(m.GetGeneralDesc().GetPossibleLength()) == 0 {
		return nil
	}
	pm := &phoneMeta{
		meta:      m,
		id:        m.GetId(),
		regions:   phonenumbers.GetRegionCodesForCountryCode(int(m.GetCountryCode())),
		types:     phoneTypesFor(m),
		cc:        int(m.GetCountryCode()),
		ccStr:     strconv.Itoa(int(m.GetCountryCode())),
		transform: m.GetNationalPrefixTransformRule(),
	}
	if pm.id == "001" {
		pm.id = ""
	}
	var err error
	if pm.idd, err = newDigitMatcher(m.GetInternationalPrefix(), true); err != nil {
		return nil
	}
	if pm.natRule, err = newDigitMatcher("^(?:"+m.GetGeneralDesc().GetNationalNumberPattern()+")$", false); err != nil {
		return nil
	}
	if p := m.GetNationalPrefixForParsing(); p != "" {
		if pm.natPrefix, err = newDigitMatcher("^(?:"+p+")", true); err != nil {
			return nil
		}
	}
	return pm
}

// stripNationalPrefix is maybeStripNationalPrefixAndCarrierCode without
// the carrier code.
func (pm *phoneMeta) stripNationalPrefix(num string) string {
	if num == "" || pm.natPrefix == nil {
		return num
	}
	if pm.transform == "" {
		// Without a transform rule only the end of the match matters:
		// the table gives it without regexp's submatch machinery.
		end := pm.natPrefix.prefixEnd(num)
		if end < 0 {
			return num
		}
		if pm.natRule.match(num) && !pm.natRule.match(num[end:]) {
			return num
		}
		return num[end:]
	}
	// A copy keeps num on the caller's stack: regexp's machines retain
	// their input.
	return pm.stripWithTransform(strings.Clone(num))
}

// stripWithTransform is stripNationalPrefix for metadata with a national
// prefix transform rule, through regexp.
func (pm *phoneMeta) stripWithTransform(num string) string {
	re := pm.natPrefix.re
	groups := re.FindStringSubmatchIndex(num)
	if groups == nil {
		return num
	}
	viable := pm.natRule.match(num)
	n := len(groups)/2 - 1
	if groups[n*2] < 0 {
		if viable && !pm.natRule.match(num[groups[1]:]) {
			return num
		}
		return num[groups[1]:]
	}
	t := re.ReplaceAllString(num, pm.transform)
	if viable && !pm.natRule.match(t) {
		return num
	}
	return t
}

// lengthResult is testNumberLength(number, metadata, UNKNOWN).
func (pm *phoneMeta) lengthResult(number string) (phonenumbers.ValidationResult, bool) {
	desc := pm.meta.GetGeneralDesc()
	lengths := desc.GetPossibleLength()
	if len(lengths) == 0 {
		return 0, false
	}
	if lengths[0] == -1 {
		return phonenumbers.INVALID_LENGTH, true
	}
	n := int32(len(number))
	for _, l := range desc.GetPossibleLengthLocalOnly() {
		if l == n {
			return phonenumbers.IS_POSSIBLE_LOCAL_ONLY, true
		}
	}
	switch {
	case lengths[0] == n:
		return phonenumbers.IS_POSSIBLE, true
	case lengths[0] > n:
		return phonenumbers.TOO_SHORT, true
	case lengths[len(lengths)-1] < n:
		return phonenumbers.TOO_LONG, true
	}
	for _, l := range lengths[1:] {
		if l == n {
			return phonenumbers.IS_POSSIBLE, true
		}
	}
	return phonenumbers.INVALID_LENGTH, true
}
