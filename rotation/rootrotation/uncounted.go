package rootrotation

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// UncountedLeaves is implemented by an Intermediates whose leaves meshca
// does not issue and so cannot count (a plug-in cluster's intermediate,
// with which that cluster's istiod signs): while one is a lineage,
// wait-out-ttl lasts its maximum wait (or until an operator advances),
// as meshca cannot tell when that lineage's leaves under the old root
// are gone.
type UncountedLeaves interface {
	UncountedLeaves() bool
}

// uncountedLocked reports whether a lineage's leaves cannot be counted
// (UncountedLeaves, or the default lineage with Options.DefaultUncounted),
// with a note naming those lineages for the phase's
// waiting text; c.mu is held.
func (c *Controller) uncountedLocked(maxWait time.Duration) (note string, uncounted bool) {
	var names []string
	for _, l := range c.lineagesLocked() {
		if u, ok := l.m.(UncountedLeaves); ok && u.UncountedLeaves() || l.signer == store.DefaultSigner && c.o.DefaultUncounted {
			names = append(names, l.String())
		}
	}
	if len(names) == 0 {
		return "", false
	}
	return fmt.Sprintf("; the leaves of %s are signed outside meshca and not counted, so the phase lasts its maximum wait %s", strings.Join(names, ", "), maxWait), true
}
