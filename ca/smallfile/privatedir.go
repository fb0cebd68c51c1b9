package smallfile

import (
	"fmt"
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
		return fmt.Errorf("%s %s is writable by others (mode %04o); run chmod o-w %s, or %s", what, dir, fi.Mode().Perm(), dir, instead)
	}
	return nil
}
