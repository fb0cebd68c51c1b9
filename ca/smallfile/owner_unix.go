//go:build unix

package smallfile

import (
	"io/fs"
	"syscall"
)

// ownerUID is the owner of fi, when the platform says.
func ownerUID(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
