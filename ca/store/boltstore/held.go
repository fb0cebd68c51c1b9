package boltstore

import (
	"errors"
	"os"
	"syscall"
)

// Held reports, without waiting, whether another process holds the store
// at path: bbolt takes an exclusive flock(2) on its file for as long as it
// is open for writing (meshca serve, or a command that writes), which
// Open waits out for up to its lock timeout (2 s). Held tries a shared
// lock without blocking and releases it at once. A file that does not
// exist or cannot be opened is not held as far as Held can tell; Open
// then says why.
func Held(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		switch {
		case err == nil:
			return false // closing f releases it
		case errors.Is(err, syscall.EINTR):
			continue
		default:
			return errors.Is(err, syscall.EWOULDBLOCK)
		}
	}
}
