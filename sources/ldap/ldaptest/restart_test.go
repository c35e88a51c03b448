package ldaptest

import "testing"

func TestSlapdKillRestart(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{})
	s.Kill()
	if c, err := s.Conn(); err == nil {
		c.Close()
		t.Fatal("a killed server still answers")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c, err := s.Conn()
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	c.Close()
	if err := s.Restart(); err == nil {
		t.Error("Restart of a running server did not fail")
	}
}
