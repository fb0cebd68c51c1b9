package rootrotation

import (
	"fmt"
	"strings"
	"time"
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
// (UncountedLeaves), with a note naming those lineages for the phase's
// waiting text; c.mu is held.
func (c *Controller) uncountedLocked(ttlMax time.Duration) (note string, uncounted bool) {
	var names []string
	for _, l := range c.lineages {
		if u, ok := l.m.(UncountedLeaves); ok && u.UncountedLeaves() {
			names = append(names, l.signer)
		}
	}
	if len(names) == 0 {
		return "", false
	}
	return fmt.Sprintf("; the leaves of %s are signed outside meshca and not counted, so the phase lasts its maximum wait %s", strings.Join(names, ", "), ttlMax), true
}
