package connector

import (
	"errors"
	"testing"
)

// AR, BR, JP have national prefix transform rules (the regexp path), AU
// and BR IDDs with alternatives and AU, JP national prefixes with several
// (leftmost-first match ends).
var fuzzPhoneRegions = []string{"FR", "US", "GB", "DE", "", "fr", "CA", "IT", "XX", "AR", "BR", "MX", "AU", "RU", "JP"}

// FuzzNormalizePhoneFast checks that NormalizePhone, with its fast path,
// returns exactly what normalizePhoneSlow (phonenumbers.Parse) returns:
// the same number, or an error with the same text and kind. The seeds run
// as a test; go test -fuzz=FuzzNormalizePhoneFast explores further.
func FuzzNormalizePhoneFast(f *testing.F) {
	seeds := []string{
		// national, international, IDD (00, 011), national prefixes
		"01 23 45 67 89", "06 12 34 56 78", "+33 1 23 45 67 89", "0033 1 23 45 67 89",
		"+33 (0)1 23 45 67 89", "33 1 23 45 67 89", "0033123456789", "(01) 23.45.67.89",
		"(212) 555-0123", "212-555-0123", "1 212 555 0123", "+1 212 555 0123",
		"011 33 1 23 45 67 89", "011 44 20 7946 0958", "1-800-555-0199", "1 (650) 253-0000",
		"020 7946 0958", "+44 20 7946 0958", "07700 900123", "0044 7700 900123", "44 20 7946 0958",
		"030 123456", "+49 30 1234567", "0049 (0)30 1234567", "49 30 1234567", "0171 1234567",
		"+39 06 1234 5678", "+39 312 345 6789", "+800 1234 5678", "+882 1234 5678", "+979 123456789",
		"+1 242 555 0123", "+7 495 123 45 67", "+54 9 11 1234 5678", "+52 1 55 1234 5678",
		// extensions, letters, unicode digits
		"01 23 45 67 89 ext. 12", "+1 212 555 0123 x123", "(212) 555-0123 #45", "212 555 0123;ext=5",
		"1-800-FLOWERS", "+33 1 23 45 67 8a", "tel:+33-1-23-45-67-89", "+33 1 23 45 67 89;phone-context=+33",
		"０１ ２３ ４５ ６７ ８９", "٠١٢٣٤٥٦٧٨٩", "+３３ １ ２３ ４５ ６７ ８９", "+ 33 1 23 45 67 89", "++33 1 23 45 67 89",
		// short, too long, degenerate
		"12", "112", "15", "1 2", "+", "+1", "+12", "+123", "0", "00", "000", "0033", "00 0", "011",
		"01 23 45 67 89 01 23 45 67 89", "+33 1234567890123456789", "123456789012345678901234567890",
		"--", "()", "(", "/01/23/45/67/89/", "01 23 45 67 89.", "...0123456789", " 0123456789 ",
		"+0 123 456 789", "+33+1 23", "+330123456789", "00 33 0 1 23 45 67 89", "0 800 123 456",
	}
	for _, s := range seeds {
		for i := range fuzzPhoneRegions {
			f.Add(s, uint8(i%3*2), uint8(i)) // work, mobile, other
		}
	}
	f.Add("1234", uint8(1), uint8(0)) // work_extension
	f.Fuzz(func(t *testing.T, value string, typ, region uint8) {
		ty := PhoneTypes[int(typ)%len(PhoneTypes)]
		reg := fuzzPhoneRegions[int(region)%len(fuzzPhoneRegions)]
		got, gerr := NormalizePhone(value, ty, reg)
		want, werr := normalizePhoneSlow(value, ty, reg)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Fatalf("NormalizePhone(%q, %q, %q) = %q, %v; slow = %q, %v", value, ty, reg, got, gerr, want, werr)
		}
		if gerr != nil && (gerr.Error() != werr.Error() || !errors.Is(gerr, ErrInvalidPhone)) {
			t.Fatalf("NormalizePhone(%q, %q, %q) error %q; slow %q", value, ty, reg, gerr, werr)
		}
	})
}

func BenchmarkNormalizePhoneSlow(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := normalizePhoneSlow("01 23 45 67 89", "work", "FR"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFastE164Answers pins the shapes the fast path must answer itself (a
// regression there would only show as lost speed) and checks each answer
// against normalizePhoneSlow.
func TestFastE164Answers(t *testing.T) {
	tests := []struct{ value, region string }{
		{"01 23 45 67 89", "FR"},
		{"06.12.34.56.78", "fr"},
		{"+33 (0)1 23 45 67 89", "FR"},
		{"0033 1 23 45 67 89", "FR"},
		{"+33 1 23 45 67 89", ""},
		{"(212) 555-0123", "US"},
		{"1 212 555 0123", "US"},
		{"011 44 20 7946 0958", "US"},
		{"020 7946 0958", "GB"},
		{"07911 123456", "GB"},
		{"030 1234567", "DE"},
		{"+49 (0)171 1234567", "DE"},
		{"+39 06 1234 5678", "FR"},
		{"+1 242 357 1234", "FR"},
	}
	for _, tt := range tests {
		t.Run(tt.region+"/"+tt.value, func(t *testing.T) {
			got, ok := fastE164(tt.value, tt.region)
			want, err := normalizePhoneSlow(tt.value, "work", tt.region)
			if !ok || err != nil || got != want {
				t.Fatalf("fastE164 = %q, %v; slow = %q, %v", got, ok, want, err)
			}
		})
	}
}
