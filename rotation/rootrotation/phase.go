// Package rootrotation drives meshca's orchestrated root rotation: from
// the roots in force (A) to a new root (B) without a moment where a
// workload cannot verify a peer, in the phases of Istio's own root
// rotation (Istio docs, "Plug in CA Certificates", and its cacert_rotation
// integration test):
//
//  1. publish-both-roots: the roots become A then B, and every trust
//     distribution channel (cacerts root-cert.pem, the istio-ca-root-cert
//     ConfigMaps, ClusterTrustBundles, the last element of the Istio
//     endpoint's chain) carries both; root-cert.pem gets B's bytes
//     appended after A's, so that istiod's multi-root check accepts it.
//  2. wait-for-workloads: until every unexpired workload certificate was
//     issued after both roots were published (so its holder received both
//     roots), or the configured maximum wait, about half the workload
//     certificate TTL.
//  3. switch-intermediate: a new intermediate under B becomes the signer.
//  4. wait-out-ttl: until no unexpired leaf under A's intermediates
//     remains, or the longest workload TTL has passed.
//  5. remove-old-root: the roots become B alone; root-cert.pem becomes B's
//     bytes, a byte-substring of the A+B bundle.
//
// Every transition is journaled in the store before it acts (see
// store.RootRotation), so that meshca restarted at any point resumes it.
// Source is the root.Source that follows the journaled phase; Controller
// moves through the phases.
package rootrotation

import "fmt"

// Phase is a root rotation's phase.
type Phase string

// The phases, in order.
const (
	PhaseIdle          Phase = "idle"
	PhasePublish       Phase = "publish-both-roots"
	PhaseWaitWorkloads Phase = "wait-for-workloads"
	PhaseSwitch        Phase = "switch-intermediate"
	PhaseWaitTTL       Phase = "wait-out-ttl"
	PhaseRemove        Phase = "remove-old-root"
	PhaseDone          Phase = "done"
)

var phases = []Phase{PhaseIdle, PhasePublish, PhaseWaitWorkloads, PhaseSwitch, PhaseWaitTTL, PhaseRemove, PhaseDone}

// Code is the phase's number, the value of meshca_rotation_phase{ca="root"}:
// 1 to 5 while rotating, 0 when idle or done.
func (p Phase) Code() int {
	switch p {
	case PhaseIdle, PhaseDone:
		return 0
	}
	return p.index()
}

func (p Phase) index() int {
	for i, q := range phases {
		if q == p {
			return i
		}
	}
	return -1
}

// Valid reports whether p is one of the phases.
func (p Phase) Valid() bool { return p.index() >= 0 }

// next is the phase after p.
func (p Phase) next() Phase {
	i := p.index()
	if i < 0 || i+1 >= len(phases) {
		return PhaseDone
	}
	return phases[i+1]
}

// InProgress reports whether p is one of the five rotating phases.
func (p Phase) InProgress() bool { c := p.Code(); return c >= 1 && c <= 5 }

// bothRoots: A and B are both published.
func (p Phase) bothRoots() bool {
	i := p.index()
	return i >= PhasePublish.index() && i <= PhaseWaitTTL.index()
}

// underNew: new intermediates are minted under B.
func (p Phase) underNew() bool { return p.index() >= PhaseSwitch.index() }

// isWait: the phase waits; an operator may force it to end (Advance).
func (p Phase) isWait() bool { return p == PhaseWaitWorkloads || p == PhaseWaitTTL }

func (p Phase) String() string {
	if c := p.Code(); c > 0 {
		return fmt.Sprintf("%s (%d of 5)", string(p), c)
	}
	return string(p)
}
