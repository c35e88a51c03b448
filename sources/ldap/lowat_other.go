//go:build !linux

package ldap

import "net"

// socketLowat is Linux's only: elsewhere poll may ignore SO_RCVLOWAT, and
// a mark the kernel does not honour for waking would only cost the calls.
func socketLowat(net.Conn) func(n int) error { return nil }
