package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/meshca/meshca/ca/smallfile"
)

// socketListener is the admin socket: bound at a private temporary name,
// made 0600, then renamed into place, so that no other user can ever
// connect to it, whatever the umask. Close removes it if it is still ours.
type socketListener struct {
	net.Listener
	path string
	// ours is the socket file as bound, to recognise it at removal.
	ours fs.FileInfo
	once sync.Once
	err  error
}

// listenSocket binds the admin socket at path. The directory must be owned
// by this user (or root) and not writable by others: the socket's
// permissions are its only authentication (unix(7): connecting needs write
// permission on the socket file), and a directory others can write lets
// them replace it. A group-writable directory (a volume under the pod's
// fsGroup) is accepted: its group is the pod's own.
// A socket left by a process that died is removed only when no one is
// listening on it.
func listenSocket(path string) (*socketListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if err := smallfile.CheckPrivateDir(dir, "admin socket directory", "choose a server.adminSocket in a private directory"); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	tmpDir, err := mkdirShortTemp(dir)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w (choose a shorter server.adminSocket)", path, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return &socketListener{Listener: l, path: path, ours: fi}, nil
}

// Close stops listening and removes the socket file unless another
// process has replaced it meanwhile.
func (s *socketListener) Close() error {
	s.once.Do(func() {
		s.err = s.Listener.Close()
		if fi, err := os.Lstat(s.path); err == nil && os.SameFile(fi, s.ours) {
			if err := os.Remove(s.path); err != nil && s.err == nil {
				s.err = err
			}
		}
	})
	return s.err
}

// mkdirShortTemp makes a private directory in dir whose socket path
// (dir/.xxxxxx/s) is no longer than dir/admin.sock: sun_path is short.
func mkdirShortTemp(dir string) (string, error) {
	for range 100 {
		p := filepath.Join(dir, fmt.Sprintf(".%06x", rand.Uint32()&0xffffff))
		err := os.Mkdir(p, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return p, err
	}
	return "", fmt.Errorf("no free temporary name in %s", dir)
}

// removeStale removes a socket at path that no process listens on. It
// refuses to touch anything else.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin socket %s exists and is not a socket; remove it or choose another server.adminSocket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("admin socket %s is in use by another process (another meshca serve?); stop it or choose another server.adminSocket", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale admin socket %s: %w", path, err)
	}
	return nil
}
