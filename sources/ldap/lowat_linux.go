package ldap

import (
	"net"
	"syscall"
)

// socketLowat returns the setter of c's SO_RCVLOWAT, or nil for a
// connection that is not a socket (tests' pipes). For TLS it is the TCP
// connection's mark: the record overhead only makes the queued bytes more
// than the estimate counts.
func socketLowat(c net.Conn) func(n int) error {
	if t, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = t.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func(n int) error {
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
		}); err != nil {
			return err
		}
		return serr
	}
}
