package rootrotation

// UncountedLeaves is implemented by an Intermediates whose leaves meshca
// does not issue and so cannot count (a plug-in cluster's intermediate,
// with which that cluster's istiod signs): while one is a lineage,
// wait-out-ttl lasts its maximum wait (or until an operator advances),
// as meshca cannot tell when that lineage's leaves under the old root
// are gone.
type UncountedLeaves interface {
	UncountedLeaves() bool
}

// uncountedLocked names the lineages whose leaves meshca cannot count
// (UncountedLeaves); c.mu is held.
func (c *Controller) uncountedLocked() []string {
	var out []string
	for _, l := range c.lineages {
		if u, ok := l.m.(UncountedLeaves); ok && u.UncountedLeaves() {
			out = append(out, l.signer)
		}
	}
	return out
}
