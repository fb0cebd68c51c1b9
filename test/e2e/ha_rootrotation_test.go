package e2e

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// haAnswer is what one replica's Istio endpoint hands out now: the chain's
// last element (the roots) and the intermediate. The leaf must verify
// through that intermediate to those roots; a refused call (a replica
// between phases, the rate limiter) is returned as an error.
func haAnswer(t *testing.T, s *server, trustPEM []byte, token string) (roots string, inter *x509.Certificate, err error) {
	t.Helper()
	chain, err := issueChain(t, s, trustPEM, token, "spiffe://cluster.local/ns/shop/sa/app")
	if err != nil {
		return "", nil, err
	}
	if len(chain) != 3 {
		return "", nil, fmt.Errorf("chain of %d elements; want leaf, intermediate, roots", len(chain))
	}
	leaf, in := splitPEM(t, chain[0])[0], splitPEM(t, chain[1])[0]
	pool, ip := x509.NewCertPool(), x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(chain[2])) {
		return "", nil, fmt.Errorf("the chain's roots hold no certificate")
	}
	ip.AddCert(in)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: ip, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", nil, fmt.Errorf("the leaf does not verify against the roots it came with: %w", err)
	}
	return chain[2], in, nil
}

// TestHA_FollowerFollowsTheRootRotationAndANewHolderFinishesIt: two
// replicas on one PostgreSQL database under one Lease; 'meshca rotate' at
// the holder. In phases 1 and 2 the follower hands out A and B (its
// intermediate still under A), in phase 4 it signs with the holder's
// intermediate under B. The holder is then SIGKILLed: the follower takes
// the Lease and finishes the rotation from the journal (phase 5: B alone),
// and the old holder, restarted on its configuration that still names A,
// follows with B alone.
func TestHA_FollowerFollowsTheRootRotationAndANewHolderFinishesIt(t *testing.T) {
	c := newHACluster(t, "server:\n  rateLimit:\n    perIdentityQPS: 100000\n    perIdentityBurst: 100000\n")
	ctx := t.Context()
	token, err := c.env.MintToken(ctx, "shop", "app", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	bDir := initCA(t) // root B: another development CA's root, its keys in files
	aPEM, err := os.ReadFile(filepath.Join(c.dirA, "root-cert.pem"))
	require.NoError(t, err)
	bPEM, err := os.ReadFile(filepath.Join(bDir, "root-cert.pem"))
	require.NoError(t, err)
	rootA, rootB := splitPEM(t, string(aPEM))[0], splitPEM(t, string(bPEM))[0]
	both := append(append([]byte(nil), aPEM...), bPEM...)

	a, b, _, idB := c.startPair(t)
	// hands waits until s hands out roots, its intermediate issued by
	// issuer, and returns that intermediate.
	hands := func(s *server, what string, roots []byte, issuer *x509.Certificate) *x509.Certificate {
		t.Helper()
		var (
			inter *x509.Certificate
			last  string
		)
		start := time.Now()
		for {
			r, in, err := haAnswer(t, s, both, token)
			switch {
			case err != nil:
				last = err.Error()
			case r != string(roots):
				last = fmt.Sprintf("roots of %d bytes", len(r))
			case in.CheckSignatureFrom(issuer) != nil:
				last = "an intermediate under another root: " + in.Issuer.String()
			default:
				inter = in
			}
			if inter != nil {
				t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
				return inter
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("%s: not within 30s (last: %s):\n%s", what, last, s.logs())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	inter0 := hands(b, "the follower hands out A", aPEM, rootA)

	// Phases 1 and 2, at the holder: both replicas hand out A and B, and
	// still sign under A.
	meshca(t, "rotate", "root", "--dir", c.dirA, "--new-root-cert", filepath.Join(bDir, "root-cert.pem"),
		"--new-root-key", filepath.Join(bDir, "root-key.pem"), "--new-root-pq-key", filepath.Join(bDir, "root-pq-key.pem"))
	rrWaitPhase(t, c.dirA, a, "wait-for-workloads")
	hands(a, "the holder hands out A and B", both, rootA)
	inter1 := hands(b, "the follower hands out A and B", both, rootA)
	require.True(t, inter0.Equal(inter1), "the follower's intermediate stays until phase 3")
	// Logged after the roots are handed out, and read from stderr by another goroutine.
	waitFor(t, 10*time.Second, "the follower logs that it follows the holder", func() bool {
		return strings.Contains(b.logs(), `"msg":"root rotation: following the lease holder"`)
	})

	// Phases 3 and 4: the holder's intermediate under B; the follower
	// signs with it and keeps both roots.
	meshca(t, "rotate", "advance", "--dir", c.dirA)
	rrWaitPhase(t, c.dirA, a, "wait-out-ttl")
	interA := hands(a, "the holder signs under B", both, rootB)
	interB := hands(b, "the follower signs under B", both, rootB)
	require.True(t, interA.Equal(interB), "both replicas sign with the holder's new intermediate")

	// The holder dies in phase 4. The follower takes the Lease and the
	// operator finishes the rotation there, from the journal.
	a.kill(t)
	waitFor(t, haTakeoverBound, "replica B takes the Lease", func() bool { return c.holder(t) == idB })
	// The Lease names B a moment before B leads (it reads its fence
	// token first); advancing is a leader's step.
	waitFor(t, 10*time.Second, "replica B leads", func() bool { return b.metricIs(t, "meshca_lease_held", 1) })
	require.Equal(t, "wait-out-ttl", rrPhase(t, c.dirB))
	meshca(t, "rotate", "advance", "--dir", c.dirB)
	rrWaitPhase(t, c.dirB, b, "done")
	interDone := hands(b, "the new holder hands out B alone", bPEM, rootB)
	require.True(t, interB.Equal(interDone), "phase 5 keeps the intermediate under B")

	// The old holder, restarted on the configuration that still names A,
	// follows: B alone, the same intermediate.
	a2 := startServe(t, c.dirA)
	a2.waitReady(t, 15*time.Second)
	require.True(t, interDone.Equal(hands(a2, "the restarted replica hands out B alone", bPEM, rootB)))
	require.Equal(t, idB, c.holder(t), "the restarted replica follows")
}
