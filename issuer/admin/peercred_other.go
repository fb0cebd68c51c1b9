//go:build !linux

package admin

import "net"

// peerUID is unknown off Linux: the socket's 0600 mode is then the only
// check.
func peerUID(net.Conn) (int, error) { return -1, errPeerUnsupported }
