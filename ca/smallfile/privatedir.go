package smallfile

import (
	"fmt"
	"io/fs"
	"os"
)

// CheckPrivateDir checks that dir, named what in errors (e.g.
// "federation.stateDir"), is a directory owned by this user or root and not
// writable by others, so that nobody else can replace the files meshca
// keeps there. root may own it: a Kubernetes volume's root is root's,
// shared with the pod's fsGroup (group-writable, setgid), and root can
// replace any file anyway. instead completes the advice ("choose ..."),
// e.g. "choose a private federation.stateDir".
func CheckPrivateDir(dir, what, instead string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a directory; %s", what, dir, instead)
	}
	if uid, ok := ownerUID(fi); ok && uid != os.Geteuid() && uid != 0 {
		return fmt.Errorf("%s %s is owned by uid %d, not by meshca's user (uid %d) or root; %s", what, dir, uid, os.Geteuid(), instead)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%s %s is writable by others (mode %s); run chmod o-w %s, or %s", what, dir, chmodMode(fi.Mode()), dir, instead)
	}
	return nil
}

// chmodMode is m in the octal of chmod(1): the permission bits with the
// setuid (4000), setgid (2000) and sticky (1000) bits, which Go keeps
// apart from them.
func chmodMode(m fs.FileMode) string {
	v := uint32(m.Perm())
	for bit, octal := range map[fs.FileMode]uint32{fs.ModeSetuid: 0o4000, fs.ModeSetgid: 0o2000, fs.ModeSticky: 0o1000} {
		if m&bit != 0 {
			v |= octal
		}
	}
	return fmt.Sprintf("%04o", v)
}
