package e2e

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestClusters_RootRotationAcrossTwoClusters rotates the root A to B with
// a plug-in cluster (east) and a meshca-signs cluster (west) as one
// orchestration: while west's apiserver is down, the rotation cannot
// complete publish-both-roots, so no cluster moves to an intermediate
// under B before every cluster trusts A+B; at each phase east's cacerts
// root-cert.pem follows the byte-append rule (A, then A's bytes with B's
// appended, then B, a byte-substring of A+B) and every cluster's
// istio-ca-root-cert holds the same roots; east's own intermediate moves
// to B in the switch, west's workloads get meshca's intermediate under B.
func TestClusters_RootRotationAcrossTwoClusters(t *testing.T) {
	east, eastKC := meshcaInCluster(t, "shop")
	west, westKC := meshcaInCluster(t, "shop")
	dir := initCA(t)
	bDir := initCA(t)
	appendYAML(t, dir, "clusters:\n"+
		"  - {id: east, kubeconfig: "+eastKC+", mode: plug-in}\n"+
		"  - {id: west, kubeconfig: "+westKC+", mode: meshca-signs}\n")
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	aPEM := []byte(readFile(t, filepath.Join(dir, "root-cert.pem")))
	bPEM := []byte(readFile(t, filepath.Join(bDir, "root-cert.pem")))
	both := append(append([]byte(nil), aPEM...), bPEM...)
	rootB := splitPEM(t, string(bPEM))[0]
	rootA := splitPEM(t, string(aPEM))[0]

	// waitRoots waits until east's cacerts root-cert.pem is exactly want
	// and both clusters' istio-ca-root-cert hold it too.
	waitRoots := func(what string, want []byte) (es, ws meshClusterState) {
		t.Helper()
		waitFor(t, 30*time.Second, what, func() bool {
			es, ws = readMeshCluster(t, east), readMeshCluster(t, west)
			return bytes.Equal(es.cacerts["root-cert.pem"], want) && es.rootCM == string(want) && ws.rootCM == string(want)
		})
		return es, ws
	}
	es0, _ := waitRoots("A in both clusters", aPEM)
	inter0 := splitPEM(t, string(es0.cacerts["ca-cert.pem"]))[0]
	require.NoError(t, inter0.CheckSignatureFrom(rootA))

	// west cannot be reached: publish-both-roots does not complete.
	require.NoError(t, west.StopAPIServer())
	meshca(t, "rotate", "root", "--dir", dir, "--new-root-cert", filepath.Join(bDir, "root-cert.pem"),
		"--new-root-key", filepath.Join(bDir, "root-key.pem"), "--new-root-pq-key", filepath.Join(bDir, "root-pq-key.pem"))
	waitFor(t, 60*time.Second, "the rotation reports that west does not trust the roots yet", func() bool {
		out := meshca(t, "rotate", "status", "--dir", dir)
		return bytes.Contains([]byte(out), []byte(`cluster "west"`))
	})
	require.Equal(t, "publish-both-roots", rrPhase(t, dir), "no phase after publish-both-roots while west is unreachable")
	es := readMeshCluster(t, east)
	require.True(t, bytes.Equal(es.cacerts["ca-cert.pem"], es0.cacerts["ca-cert.pem"]), "east keeps its intermediate under A")
	require.NoError(t, west.RestartAPIServer())

	// Phase 1-2: A's bytes with B's appended, everywhere.
	es1, _ := waitRoots("A+B in both clusters", both)
	// The controller retries a failed phase action every 30 s.
	waitFor(t, 90*time.Second, "publish-both-roots completes once west trusts A+B", func() bool { return rrPhase(t, dir) == "wait-for-workloads" })
	require.True(t, bytes.Equal(es1.cacerts["ca-cert.pem"], es0.cacerts["ca-cert.pem"]), "east's intermediate stays under A until the switch")
	// A west workload's leaf under A (an hour): wait-out-ttl holds for it.
	westA := westIssue(t, s, west, "west", string(both))
	require.NoError(t, westA[1].CheckSignatureFrom(rootA))

	// Phase 3-4: east's own intermediate under B, both roots stay.
	meshca(t, "rotate", "advance", "--dir", dir)
	rrWaitPhase(t, dir, s, "wait-out-ttl")
	var es3 meshClusterState
	waitFor(t, 30*time.Second, "east's intermediate under B", func() bool {
		es3 = readMeshCluster(t, east)
		return !bytes.Equal(es3.cacerts["ca-cert.pem"], es0.cacerts["ca-cert.pem"])
	})
	inter3 := splitPEM(t, string(es3.cacerts["ca-cert.pem"]))[0]
	require.NoError(t, inter3.CheckSignatureFrom(rootB), "east's new intermediate is under B")
	require.Equal(t, "meshca intermediate cluster east", inter3.Subject.CommonName)
	require.True(t, bytes.Equal(es3.cacerts["root-cert.pem"], both), "root-cert.pem keeps both roots in phase 4")
	// Istio needs a CRL from every certificate of cert-chain.pem: east's
	// new intermediate and B; its previous intermediate and A too, for the
	// leaves east's istiod signed before the switch.
	require.True(t, rrCRLFrom(t, es3.cacerts["ca-crl.pem"], inter3) && rrCRLFrom(t, es3.cacerts["ca-crl.pem"], rootB) &&
		rrCRLFrom(t, es3.cacerts["ca-crl.pem"], inter0) && rrCRLFrom(t, es3.cacerts["ca-crl.pem"], rootA), "east's ca-crl.pem in phase 4")
	require.Equal(t, string(both), readMeshCluster(t, west).rootCM)
	westChain := westIssue(t, s, west, "west", string(both))
	require.NoError(t, westChain[1].CheckSignatureFrom(rootB), "west's workloads get meshca's intermediate under B")

	// Phase 5: B alone, a byte-substring of A+B, in every cluster.
	meshca(t, "rotate", "advance", "--dir", dir)
	rrWaitPhase(t, dir, s, "done")
	es5, _ := waitRoots("B in both clusters", bPEM)
	require.True(t, bytes.Contains(es1.cacerts["root-cert.pem"], es5.cacerts["root-cert.pem"]), "phase 5's root-cert.pem is a byte-substring of phase 1's")
	require.True(t, bytes.Equal(es5.cacerts["ca-cert.pem"], es3.cacerts["ca-cert.pem"]))
}
