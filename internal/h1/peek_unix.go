//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly || solaris

package h1

import (
	"net"
	"syscall"
)

// setSocket sets c's socket to raw's, when raw exposes its file descriptor (syscall.Conn, as
// net.TCPConn does); c.socket stays nil otherwise.
func (c *conn) setSocket(raw net.Conn) {
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	c.socket, c.peek = rc, c.peekFD
}

// socketQuiet reports whether c's socket has nothing to read: a non-blocking recv with MSG_PEEK
// finds no byte (EAGAIN), rather than bytes, the end of the stream (0) or an error. A connection
// without a socket to peek at (c.socket nil) is not quiet.
func (c *conn) socketQuiet() bool {
	if c.socket == nil {
		return false
	}
	c.peekErr = nil
	if err := c.socket.Control(c.peek); err != nil {
		return false
	}
	return c.peekErr == syscall.EAGAIN || c.peekErr == syscall.EWOULDBLOCK
}

// peekFD peeks at the receive queue of the socket fd, leaving the error in c.peekErr: nil when
// it found a byte or the end of the stream (c.peek is this method bound to c, so that socketQuiet
// allocates nothing).
func (c *conn) peekFD(fd uintptr) {
	for {
		_, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err != syscall.EINTR {
			c.peekErr = err
			return
		}
	}
}
