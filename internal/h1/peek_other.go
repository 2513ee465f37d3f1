//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || solaris)

package h1

import "net"

// setSocket leaves c.socket nil: on these systems a Pool does not peek at sockets, so it keeps no
// connection idle (see the package documentation).
func (c *conn) setSocket(net.Conn) {}

// socketQuiet reports false: there is no socket to peek at.
func (c *conn) socketQuiet() bool { return false }
