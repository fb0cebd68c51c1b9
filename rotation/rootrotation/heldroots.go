package rootrotation

import (
	"fmt"

	"github.com/meshca/meshca/ca/root"
)

// SigningRoots implements root.RootKeysHolder: every root of the current
// phase whose key meshca holds, the minting root first. From phase 1 to
// phase 4 both A and B are trust anchors and each has issued (or, before
// the switch, will issue) intermediates whose leaves are in use, so each
// needs a CRL signed by itself listing the intermediates it issued (RFC
// 5280 section 5): from the switch on, B mints and A still signs its own
// CRL until it leaves in phase 5.
func (s *Source) SigningRoots() ([]root.HeldRoot, error) {
	s.mu.RLock()
	old, next, newRoot, phase := s.old, s.next, s.newRoot, s.phase
	s.mu.RUnlock()
	rotating := next != nil && newRoot != nil && phase != PhaseIdle
	// A is in force when idle and while both roots are published; B from
	// phase 1 on. A root no longer in force is not asked for its key (an
	// operator may have removed A's key once the rotation is done).
	var srcs []root.Source
	switch {
	case !rotating:
		srcs = []root.Source{old}
	case phase.underNew() && phase.bothRoots():
		srcs = []root.Source{next, old}
	case phase.underNew():
		srcs = []root.Source{next}
	default:
		srcs = []root.Source{old, next}
	}
	var out []root.HeldRoot
	for i, src := range srcs {
		h, ok := src.(root.RootKeyHolder)
		if !ok {
			continue
		}
		c, k, err := h.SigningRoot()
		if err != nil {
			return nil, fmt.Errorf("root rotation (phase %s): the key of root source %s: %w", phase, src.Kind(), err)
		}
		if rotating && c.Equal(newRoot) != (src == next) {
			continue // not the root this source stands for in the rotation
		}
		out = append(out, root.HeldRoot{Cert: c, Key: k, Minting: i == 0})
	}
	return out, nil
}

var _ root.RootKeysHolder = (*Source)(nil)
