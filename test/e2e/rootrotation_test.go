package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/test/kubeenv"
)

// rrState is what the apiserver and the Istio endpoint show at one step of
// a root rotation.
type rrState struct {
	// cacertsRoot is root-cert.pem of the cacerts Secret; caCert its
	// ca-cert.pem, caCRL its ca-crl.pem.
	cacertsRoot, caCert, caCRL []byte
	// configMap is root-cert.pem of the shop namespace's istio-ca-root-cert.
	configMap string
	// bundle is meshca.io:workload:roots; perRoot the names of the other
	// bundles labelled meshca.io/trust-bundle=workload.
	bundle  string
	perRoot []string
}

func rrRead(t *testing.T, env *kubeenv.Env) rrState {
	t.Helper()
	ctx := t.Context()
	var st rrState
	if sec, err := env.Client.CoreV1().Secrets("istio-system").Get(ctx, "cacerts", metav1.GetOptions{}); err == nil {
		st.cacertsRoot, st.caCert, st.caCRL = sec.Data["root-cert.pem"], sec.Data["ca-cert.pem"], sec.Data["ca-crl.pem"]
	}
	if cm, err := env.Client.CoreV1().ConfigMaps("shop").Get(ctx, "istio-ca-root-cert", metav1.GetOptions{}); err == nil {
		st.configMap = cm.Data["root-cert.pem"]
	}
	list, err := env.Client.CertificatesV1().ClusterTrustBundles().List(ctx, metav1.ListOptions{LabelSelector: "meshca.io/trust-bundle=workload"})
	require.NoError(t, err)
	for _, b := range list.Items {
		if b.Name == "meshca.io:workload:roots" {
			st.bundle = b.Spec.TrustBundle
		} else {
			st.perRoot = append(st.perRoot, b.Name)
		}
	}
	sort.Strings(st.perRoot)
	return st
}

// rrWait polls until the published state satisfies ok.
func rrWait(t *testing.T, env *kubeenv.Env, s *server, what string, ok func(rrState) bool) rrState {
	t.Helper()
	var st rrState
	deadline := time.Now().Add(30 * time.Second)
	for {
		st = rrRead(t, env)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not published within 30s (cacerts root-cert.pem %d bytes, ConfigMap %d bytes, bundle %d bytes, per-root %v):\n%s",
				what, len(st.cacertsRoot), len(st.configMap), len(st.bundle), st.perRoot, s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rrPhase is the root rotation's phase as 'meshca rotate status' prints it.
func rrPhase(t *testing.T, dir string) string {
	t.Helper()
	var info struct {
		Rotations []struct {
			CA, Phase string
		}
	}
	require.NoError(t, json.Unmarshal([]byte(meshca(t, "rotate", "status", "--dir", dir, "-o", "json")), &info))
	for _, r := range info.Rotations {
		if r.CA == "root" {
			return r.Phase
		}
	}
	t.Fatal("no root rotation status")
	return ""
}

func rrWaitPhase(t *testing.T, dir string, s *server, phase string) {
	t.Helper()
	require.Eventually(t, func() bool { return rrPhase(t, dir) == phase }, 30*time.Second, 50*time.Millisecond, "phase %s not reached:\n%s", phase, s.logs())
}

// rrIssue asks the Istio endpoint for a workload certificate as istio-agent
// does (a ServiceAccount token, TLS verified against the published roots)
// and checks it: the leaf verifies through the returned intermediate to
// the published roots, and the chain's last element is the published
// root-cert.pem byte for byte. It returns the intermediate.
func rrIssue(t *testing.T, addr, token, rootsPEM string) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM([]byte(rootsPEM)))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "meshca.istio-system.svc"})))
	require.NoError(t, err)
	defer conn.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/app")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	require.NoError(t, err)
	meta, _ := structpb.NewStruct(map[string]any{"CertSigner": ""})
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token, "clusterid", "Kubernetes"), 10*time.Second)
	defer cancel()
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), ValidityDuration: 3600, Metadata: meta})
	require.NoError(t, err)
	require.Len(t, resp.CertChain, 3, "leaf, intermediate, roots")
	require.Equal(t, rootsPEM, resp.CertChain[2], "the chain's last element is the published roots")
	leaf, inter := splitPEM(t, resp.CertChain[0]), splitPEM(t, resp.CertChain[1])
	ip := x509.NewCertPool()
	ip.AddCert(inter[0])
	_, err = leaf[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: ip, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err, "the leaf verifies against the roots published now")
	return inter[0]
}

// rrMeshcaFails runs the binary, which must fail, and returns its stderr.
func rrMeshcaFails(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(meshcaBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.Error(t, cmd.Run(), "meshca %v succeeded", args)
	return stderr.String()
}

// rrCRLFrom reports whether caCRL (ca-crl.pem) holds a CRL issued by c:
// its issuer name is c's subject and c's key verifies its signature.
func rrCRLFrom(t *testing.T, caCRL []byte, c *x509.Certificate) bool {
	t.Helper()
	for rest := caCRL; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return false
		}
		l, err := x509.ParseRevocationList(block.Bytes)
		require.NoError(t, err)
		if bytes.Equal(l.RawIssuer, c.RawSubject) && l.CheckSignatureFrom(c) == nil {
			return true
		}
	}
}

// rrRootCRLScope is the distribution point name of the CRL of a root in
// force that does not mint (crl.RootScope).
func rrRootCRLScope(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return "root-" + hex.EncodeToString(s[:])[:16]
}

func rrRootBundle(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return "meshca.io:workload:root-" + hex.EncodeToString(s[:])[:16]
}

// TestServe_RootRotationAtoAandBtoB is the root rotation end to end against
// the real apiserver: the built binary with trustBundle.enabled and
// publishCACerts, driven by 'meshca rotate' over the admin socket. At each
// step it checks the cacerts Secret's root-cert.pem (phase 1: A's bytes
// with B's appended, exactly; phase 5: B's bytes, a byte-substring of the
// A+B bundle), the istio-ca-root-cert ConfigMap, the ClusterTrustBundles
// and the Istio endpoint's chain (its leaf under A, then under B; its last
// element holding both roots in phases 1 to 4), and that the leaf issued
// verifies against the roots published then; workloads call the endpoint
// all through it with no failed call, every leaf verifying against the
// roots published when it was requested. A restart afterwards on the
// configuration that still names A keeps B.
func TestServe_RootRotationAtoAandBtoB(t *testing.T) {
	env, kubeconfig := meshcaInCluster(t, "shop")
	ctx := t.Context()
	token, err := env.MintToken(ctx, "shop", "app", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)

	dir := initCA(t)
	// B: the root of another development CA (Catalyst, like A), its keys
	// in files meshca reads.
	bDir := initCA(t)
	cfgPath := filepath.Join(dir, "meshca.yaml")
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	b = append(b, []byte("kubernetes:\n  kubeconfig: "+kubeconfig+"\ntrustBundle:\n  enabled: true\n  publishCACerts: true\n"+
		"server:\n  rateLimit:\n    perIdentityQPS: 100000\n    perIdentityBurst: 100000\n"+
		// The load workers share 127.0.0.1 and reconnect every few calls,
		// far faster than pods with their own addresses would.
		"  limits:\n    maxNewConnectionsPerSecondPerAddress: 100000\n    maxNewConnectionBurstPerAddress: 100000\n")...)
	require.NoError(t, os.WriteFile(cfgPath, b, 0o644))
	aPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	bPEM, err := os.ReadFile(filepath.Join(bDir, "root-cert.pem"))
	require.NoError(t, err)
	rootA, rootB := splitPEM(t, string(aPEM))[0], splitPEM(t, string(bPEM))[0]

	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)

	// Before: A alone everywhere; a leaf under A.
	st0 := rrWait(t, env, s, "A", func(st rrState) bool {
		return string(st.cacertsRoot) == string(aPEM) && st.configMap == string(aPEM) && st.bundle == string(aPEM)
	})
	require.Empty(t, st0.perRoot)
	require.Equal(t, "idle", rrPhase(t, dir))
	inter0 := rrIssue(t, s.grpc, token, st0.configMap)
	require.NoError(t, inter0.CheckSignatureFrom(rootA))

	// Workloads call the Istio endpoint all through the rotation, on new
	// TLS connections now and then (the serving certificate verified
	// against the roots published then).
	pub := follow(t, env, "shop")
	require.Eventually(t, func() bool { return pub.rootsPEM() == string(aPEM) }, 10*time.Second, 10*time.Millisecond)
	ws := make([]*loadWorker, 2)
	for i := range ws {
		sa := fmt.Sprintf("rr-load-%d", i)
		tok, err := env.MintToken(ctx, "shop", sa, []string{"istio-ca"}, time.Hour)
		require.NoError(t, err)
		ws[i] = &loadWorker{addr: s.grpc, token: tok, id: "spiffe://cluster.local/ns/shop/sa/" + sa, connEvery: 10, pub: pub, calls: 1}
		ws[i].run(ctx, t) // the first TokenReview of each, one after the other
		ws[i].calls = 0
	}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { w.run(loadCtx, t) })
	}

	// Bad input is refused and changes nothing.
	stderr := rrMeshcaFails(t, "rotate", "root", "--dir", dir, "--new-root-cert", filepath.Join(dir, "root-cert.pem"), "--new-root-key", filepath.Join(dir, "root-key.pem"), "--new-root-pq-key", filepath.Join(dir, "root-pq-key.pem"))
	require.Contains(t, stderr, "already a root in force")
	require.Equal(t, "idle", rrPhase(t, dir))
	// Named with flags, B's problems name the flags.
	stderr = rrMeshcaFails(t, "rotate", "root", "--dir", dir, "--new-root-cert", filepath.Join(bDir, "root-cert.pem"), "--new-root-key", filepath.Join(bDir, "root-key.pem"))
	require.Contains(t, stderr, "--new-root-cert "+filepath.Join(bDir, "root-cert.pem")+" carries an ML-DSA alternative public key (2.5.29.72); set --new-root-pq-key to its private key")
	require.Equal(t, "idle", rrPhase(t, dir))

	// Phase 1 and 2: root-cert.pem is A's bytes with B's appended.
	meshca(t, "rotate", "root", "--dir", dir, "--new-root-cert", filepath.Join(bDir, "root-cert.pem"), "--new-root-key", filepath.Join(bDir, "root-key.pem"), "--new-root-pq-key", filepath.Join(bDir, "root-pq-key.pem"))
	both := append(append([]byte(nil), aPEM...), bPEM...)
	st1 := rrWait(t, env, s, "A+B", func(st rrState) bool {
		return bytes.Equal(st.cacertsRoot, both) && st.configMap == string(both) && st.bundle == string(both) && len(st.perRoot) == 2
	})
	require.ElementsMatch(t, []string{rrRootBundle(rootA), rrRootBundle(rootB)}, st1.perRoot)
	rrWaitPhase(t, dir, s, "wait-for-workloads")
	require.True(t, bytes.Equal(st1.caCert, st0.caCert), "the intermediate stays until phase 3")
	inter1 := rrIssue(t, s.grpc, token, st1.configMap)
	require.NoError(t, inter1.CheckSignatureFrom(rootA), "phase 2 issues under A")
	samples := s.metrics(t)
	require.Equal(t, 2.0, samples[`meshca_rotation_phase{ca="root"}`])

	// Phase 3 and 4: an intermediate under B; both roots stay.
	meshca(t, "rotate", "advance", "--dir", dir)
	rrWaitPhase(t, dir, s, "wait-out-ttl")
	st3 := rrWait(t, env, s, "the intermediate under B", func(st rrState) bool {
		return len(st.caCert) > 0 && !bytes.Equal(st.caCert, st0.caCert)
	})
	require.True(t, bytes.Equal(st3.cacertsRoot, both), "root-cert.pem keeps both roots in phase 4")
	require.Equal(t, string(both), st3.configMap)
	require.Equal(t, string(both), st3.bundle)
	inter3 := rrIssue(t, s.grpc, token, st3.configMap)
	require.NoError(t, inter3.CheckSignatureFrom(rootB), "phase 4 issues under B")
	require.Equal(t, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter3.Raw})), string(st3.caCert))
	require.Equal(t, 4.0, s.metrics(t)[`meshca_rotation_phase{ca="root"}`])
	// Both roots are in force and meshca holds both keys: ca-crl.pem (as
	// Istio reads it from cacerts) holds a CRL from A and one from B, and
	// from both intermediates whose leaves are in use; each root's CRL is
	// served, A's under its own name.
	st4 := rrWait(t, env, s, "ca-crl.pem with the CRLs of A, B and both intermediates", func(st rrState) bool {
		return rrCRLFrom(t, st.caCRL, rootA) && rrCRLFrom(t, st.caCRL, rootB) && rrCRLFrom(t, st.caCRL, inter3) && rrCRLFrom(t, st.caCRL, inter0)
	})
	require.NoError(t, s.fetchCRL(t, "root.crl").CheckSignatureFrom(rootB), "root.crl is the minting root's")
	require.NoError(t, s.fetchCRL(t, rrRootCRLScope(rootA)+".crl").CheckSignatureFrom(rootA))
	// Revoking A's first intermediate lists it on A's CRL, not on B's
	// (RFC 5280 section 5: a CRL lists what its issuer issued).
	require.True(t, inter0.Equal(inter1), "phases 0 to 2 issue under the first intermediate")
	meshca(t, "revoke", "--dir", dir, "--generation", "1", "--reason", "superseded")
	require.Eventually(t, func() bool {
		return lists(s.fetchCRL(t, rrRootCRLScope(rootA)+".crl"), serialOf(inter0))
	}, 30*time.Second, 50*time.Millisecond, "A's CRL does not list generation 1's intermediate:\n%s", s.logs())
	require.False(t, lists(s.fetchCRL(t, "root.crl"), serialOf(inter0)), "B's CRL lists A's intermediate")
	rrWait(t, env, s, "ca-crl.pem after the revocation", func(st rrState) bool { return !bytes.Equal(st.caCRL, st4.caCRL) && rrCRLFrom(t, st.caCRL, rootA) })

	// Phase 5: B alone, a byte-substring of the A+B bundle.
	meshca(t, "rotate", "advance", "--dir", dir)
	rrWaitPhase(t, dir, s, "done")
	st5 := rrWait(t, env, s, "B", func(st rrState) bool {
		return bytes.Equal(st.cacertsRoot, bPEM) && st.configMap == string(bPEM) && st.bundle == string(bPEM) && len(st.perRoot) == 0
	})
	require.True(t, bytes.Contains(st1.cacertsRoot, st5.cacertsRoot), "phase 5's root-cert.pem is a byte-substring of phase 1's")
	inter5 := rrIssue(t, s.grpc, token, st5.configMap)
	require.NoError(t, inter5.CheckSignatureFrom(rootB))
	require.Equal(t, 0.0, s.metrics(t)[`meshca_rotation_phase{ca="root"}`])
	stopLoad()
	wg.Wait()
	// No call failed, and every leaf verifies against the roots that were
	// published when it was requested.
	var total int
	for _, w := range ws {
		require.Empty(t, w.failed, "failed calls during the root rotation:\n%s", s.logs())
		for _, is := range w.ok {
			total++
			leaf, inter := certsOf(t, is.chain[0]), certsOf(t, is.chain[1])
			pool, ip := x509.NewCertPool(), x509.NewCertPool()
			require.True(t, pool.AppendCertsFromPEM([]byte(is.roots)))
			ip.AddCert(inter[0])
			_, err := leaf[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: ip, CurrentTime: is.at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			require.NoError(t, err, "a leaf issued at %s does not verify against the roots published then", is.at)
		}
	}
	t.Logf("%d calls during the root rotation, none failed", total)
	require.Greater(t, total, 20)

	out := meshca(t, "rotate", "status", "--dir", dir)
	require.Contains(t, out, "root rotation ")
	require.Contains(t, out, "root.file.rootCert "+filepath.Join(bDir, "root-cert.pem"))

	// A restart on the configuration that still names A keeps B.
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-s.done)
	s.done <- nil
	s = startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	require.Contains(t, s.logs(), "root.file.rootCert "+filepath.Join(bDir, "root-cert.pem"))
	stR := rrWait(t, env, s, "B after the restart", func(st rrState) bool { return bytes.Equal(st.cacertsRoot, bPEM) })
	require.Equal(t, string(bPEM), stR.configMap)
	interR := rrIssue(t, s.grpc, token, stR.configMap)
	require.NoError(t, interR.CheckSignatureFrom(rootB))
	require.Equal(t, inter5.Raw, interR.Raw, "the same intermediate under B")

	// meshca rotate intermediate: a new intermediate, under B, at once.
	out = meshca(t, "rotate", "intermediate", "--dir", dir)
	require.Contains(t, out, "active")
	stI := rrWait(t, env, s, "the rotated intermediate", func(st rrState) bool { return !bytes.Equal(st.caCert, stR.caCert) && len(st.caCert) > 0 })
	interI := rrIssue(t, s.grpc, token, stI.configMap)
	require.NoError(t, interI.CheckSignatureFrom(rootB))
	require.NotEqual(t, interR.Raw, interI.Raw)
	require.True(t, bytes.Equal(stI.cacertsRoot, bPEM))
	// A is gone, but the leaves of its last intermediate (issued before
	// the switch, valid an hour) are in use: that generation is retained,
	// loaded under A after the restart, and its CRL stays in ca-crl.pem;
	// A's own CRL is gone with A.
	require.True(t, rrCRLFrom(t, stI.caCRL, inter0), "the CRL of A's last intermediate is missing from ca-crl.pem after a restart:\n%s", s.logs())
	require.True(t, rrCRLFrom(t, stI.caCRL, interI))
	require.True(t, rrCRLFrom(t, stI.caCRL, rootB))
	require.False(t, rrCRLFrom(t, stI.caCRL, rootA))

	// Without serve, the offline commands read the configuration, which
	// still names A: they say which keys to update (before: "run meshca
	// serve ... or meshca init", which would replace the CA).
	stopServe(t, s)
	require.NotContains(t, meshca(t, "rotate", "status", "--dir", dir), "resumes", "a finished rotation has nothing to resume")
	id := rrJournalID(t, dir)
	want := "Error: no usable active CA generation: root rotation " + id + " is done: the active intermediate chains to its new root (file " + filepath.Join(bDir, "root-cert.pem") +
		"), but this configuration still names the old one (file " + filepath.Join(dir, "root-cert.pem") + "), and only a running meshca serve follows the rotation's journal. " +
		"Update the configuration (set root.file.rootCert " + filepath.Join(bDir, "root-cert.pem") + " and root.file.rootKey " + filepath.Join(bDir, "root-key.pem") +
		" and root.file.rootPQKey " + filepath.Join(bDir, "root-pq-key.pem") + "), or run this command while meshca serve runs"
	require.Equal(t, want, errorLine(t, meshcaFails(t, "cacerts", "--dir", dir, "--out", filepath.Join(t.TempDir(), "cacerts"))))
	csr := writeCSR(t, t.TempDir(), "spiffe://cluster.local/ns/shop/sa/app")
	require.Equal(t, want, errorLine(t, meshcaFails(t, "sign", "--dir", dir, "--csr", csr, "--identity", "spiffe://cluster.local/ns/shop/sa/app")))
}

// rrJournalID is the ID of the root rotation journaled in dir's store.
func rrJournalID(t *testing.T, dir string) string {
	t.Helper()
	var info struct {
		Root struct {
			ID string `json:"id"`
		} `json:"root"`
	}
	require.NoError(t, json.Unmarshal([]byte(meshca(t, "rotate", "status", "--dir", dir, "-o", "json")), &info))
	require.NotEmpty(t, info.Root.ID)
	return info.Root.ID
}

func TestHelp_RotateCommandsExplainThemselvesWithExamples(t *testing.T) {
	for _, c := range [][]string{{"rotate", "root"}, {"rotate", "intermediate"}, {"rotate", "status"}} {
		out := meshca(t, append(c, "--help")...)
		require.Contains(t, out, "Usage:", c)
		require.Contains(t, out, "Examples:", c)
	}
	out := meshca(t, "rotate", "root", "--help")
	for _, s := range []string{"publish-both-roots", "wait-for-workloads", "switch-intermediate", "wait-out-ttl", "remove-old-root", "--new-root-cert", "--new-root-config"} {
		require.Contains(t, out, s)
	}
}
