package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/test/pgenv"
)

// The Lease timings of the HA tests (signers.controllers.leaderElection).
const (
	haLease       = "meshca-controllers"
	haLeaseDur    = 4 * time.Second
	haRetryPeriod = 500 * time.Millisecond
	// haTakeoverBound: a follower takes over a SIGKILLed holder's Lease
	// at most haLeaseDur after the holder's last renewal plus one retry
	// period (client-go leaderelection jitters it by up to 1.2); the
	// slack of four retry periods covers that retry, the test's polling
	// and a loaded machine.
	haTakeoverBound = haLeaseDur + 4*haRetryPeriod
)

// haCluster is two meshca replicas' configurations on one PostgreSQL
// database, one key store directory (the shared ReadWriteMany volume of
// keyStore.dir) and the real test apiserver.
type haCluster struct {
	env        *kubeenv.Env
	pg         *pgenv.Env
	db         string
	dirA, dirB string
}

func newHACluster(t *testing.T, extraYAML string) *haCluster {
	t.Helper()
	pg, err := pgenv.Start()
	require.NoError(t, err)
	t.Cleanup(pg.Stop)
	env, kubeconfig := meshcaInCluster(t, "shop")
	c := &haCluster{env: env, pg: pg, db: pg.CreateDatabase(t)}
	c.dirA = initCA(t)
	usePostgres(t, pg, c.dirA, c.db)
	appendYAML(t, c.dirA, "kubernetes:\n  kubeconfig: "+kubeconfig+"\n"+
		"signers:\n  controllers:\n    leaderElection:\n      leaseDuration: 4s\n      renewDeadline: 3s\n      retryPeriod: 500ms\n"+extraYAML)
	c.dirB = filepath.Join(t.TempDir(), "ca")
	out, err := exec.Command("cp", "-a", c.dirA, c.dirB).CombinedOutput()
	require.NoError(t, err, string(out))
	// B's own admin socket and pq-anchor.pem (its directory), A's keys.
	require.NoError(t, os.RemoveAll(filepath.Join(c.dirB, "keys")))
	setYAML(t, c.dirB, "keyStore:\n  type: softkms\n  dir: keys\n", "keyStore:\n  type: softkms\n  dir: "+filepath.Join(c.dirA, "keys")+"\n")
	return c
}

// holder is the Lease's holder identity ("" when none).
func (c *haCluster) holder(t *testing.T) string {
	l, err := c.env.Client.CoordinationV1().Leases("istio-system").Get(t.Context(), haLease, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// identity is the holder identity s logged at start.
func identity(t *testing.T, s *server) string {
	t.Helper()
	var id string
	waitFor(t, 5*time.Second, "serve logs its holder identity", func() bool {
		for _, line := range strings.Split(s.logs(), "\n") {
			if strings.Contains(line, `"msg":"singleton jobs run under the Lease"`) {
				_, rest, _ := strings.Cut(line, `"holder_identity":"`)
				id, _, _ = strings.Cut(rest, `"`)
				return id != ""
			}
		}
		return false
	})
	return id
}

// activeGenerations queries the store for the active generations of the
// default signer.
func (c *haCluster) activeGenerations(t *testing.T) []int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.pg.URL(c.db))
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id FROM generations WHERE signer = '' AND state = 'active' ORDER BY id")
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	return ids
}

// crlLog collects every CRL the replicas serve in ca-crl.pem, by issuer
// and CRLNumber, to find two different CRLs with one number.
type crlLog struct {
	mu   sync.Mutex
	seen map[string][32]byte // issuer|number -> the CRL's digest
	dups []string
	n    int
}

func (l *crlLog) scrape(s *server) {
	resp, err := http.Get("http://" + s.ops + "/crl/ca-crl.pem")
	if err != nil {
		return // a killed replica
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return
		}
		crl, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			l.dups = append(l.dups, "unparsable CRL: "+err.Error())
			continue
		}
		key := string(crl.RawIssuer) + "|" + crl.Number.String()
		sum := sha256.Sum256(blk.Bytes)
		if have, ok := l.seen[key]; ok && have != sum {
			l.dups = append(l.dups, fmt.Sprintf("CRLNumber %s of %s served with two contents", crl.Number, crl.Issuer))
		}
		if _, ok := l.seen[key]; !ok {
			l.n++
		}
		l.seen[key] = sum
	}
}

// watch scrapes servers every 50 ms until the test ends.
func (l *crlLog) watch(t *testing.T, servers ...*server) {
	l.seen = map[string][32]byte{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for _, s := range servers {
				l.scrape(s)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// startPair starts A (which takes the Lease) and then B (a follower).
func (c *haCluster) startPair(t *testing.T) (a, b *server, idA, idB string) {
	t.Helper()
	a = startServe(t, c.dirA)
	a.waitReady(t, 15*time.Second)
	idA = identity(t, a)
	waitFor(t, 10*time.Second, "replica A holds the Lease", func() bool { return c.holder(t) == idA })
	b = startServe(t, c.dirB)
	b.waitReady(t, 15*time.Second)
	idB = identity(t, b)
	require.NotEqual(t, idA, idB)
	return a, b, idA, idB
}

// kill SIGKILLs s and waits for it to exit.
func (s *server) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Kill())
	<-s.exited
}

// TestHA_LeaderKilledDuringCRLRebuild: two replicas on one PostgreSQL
// database under one Lease. Revocations acknowledged through the leader's
// admin socket, then SIGKILL while their CRL rebuild is pending (a 1 s
// coalescing window): the follower takes the Lease within the lease
// duration (plus one retry period), its CRLs list every acknowledged
// revocation, and no CRLNumber was ever served with two contents by
// either replica.
func TestHA_LeaderKilledDuringCRLRebuild(t *testing.T) {
	c := newHACluster(t, "crl:\n  coalesceWindow: 1s\n")
	a, b, _, idB := c.startPair(t)
	var crls crlLog
	crls.watch(t, a, b)

	// The follower refuses to revoke: the lease holder does.
	leaf := signLeaf(t, c.dirA, "spiffe://cluster.local/ns/shop/sa/x")
	out, err := exec.Command(meshcaBin, "revoke", "--dir", c.dirB, "--serial", serialOf(leaf[0]), "--reason", "keyCompromise").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "does not hold the lease")
	// So does it every root rotation operation (FailedPrecondition, not an
	// internal error after validating or minting anything).
	out, err = exec.Command(meshcaBin, "rotate", "pause", "--dir", c.dirB).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "does not hold the lease", "%s", out)

	// A client certificate revoked through the leader stops
	// authenticating at the follower too (it reads the revocations).
	client := "spiffe://cluster.local/ns/shop/sa/client"
	csrPath, keyPEM := writeCSRWithKey(t, t.TempDir(), client)
	certPEM := []byte(meshca(t, "sign", "--dir", c.dirA, "--csr", csrPath, "--identity", client))
	rootPEM, err := os.ReadFile(filepath.Join(c.dirA, "root-cert.pem"))
	require.NoError(t, err)
	require.NoError(t, istioRenew(t, b.grpc, rootPEM, certPEM, keyPEM, client), "the follower renews a client certificate the leader's store recorded")
	meshca(t, "revoke", "--dir", c.dirA, "--serial", serialOf(splitPEM(t, string(certPEM))[0]), "--reason", "keyCompromise")
	took := waitFor(t, 5*time.Second, "the follower refuses the revoked client certificate", func() bool {
		return refusedUnauthenticated(istioRenew(t, b.grpc, rootPEM, certPEM, keyPEM, client))
	})
	t.Logf("the follower refused the revoked client certificate %s after the leader acknowledged the revocation", took)
	clientGen := fmt.Sprintf("gen-%d.crl", c.activeGenerations(t)[0])
	clientSerial := serialOf(splitPEM(t, string(certPEM))[0])
	took = waitFor(t, 5*time.Second, "the follower's own CRL lists the revocation", func() bool { return lists(b.fetchCRL(t, clientGen), clientSerial) })
	t.Logf("the follower's CRL listed it %s after", took)

	var revoked []string
	for i := range 4 {
		l := signLeaf(t, c.dirA, fmt.Sprintf("spiffe://cluster.local/ns/shop/sa/r%d", i))
		revoked = append(revoked, serialOf(l[0]))
	}
	for _, s := range revoked {
		meshca(t, "revoke", "--dir", c.dirA, "--serial", s, "--reason", "keyCompromise")
	}
	gen := fmt.Sprintf("gen-%d.crl", c.activeGenerations(t)[0])
	listsAll := func(s *server) bool {
		l := s.fetchCRL(t, gen)
		for _, r := range revoked {
			if !lists(l, r) {
				return false
			}
		}
		return true
	}
	require.False(t, listsAll(a), "the rebuild is still pending in the coalescing window")
	a.kill(t)
	killed := time.Now()

	waitFor(t, haTakeoverBound, "replica B takes the Lease", func() bool { return c.holder(t) == idB })
	t.Logf("takeover: replica B held the Lease %.2fs after replica A was SIGKILLed (lease duration %s)", time.Since(killed).Seconds(), haLeaseDur)
	waitFor(t, 10*time.Second, "the new leader's CRL lists every acknowledged revocation", func() bool { return listsAll(b) })
	// Revocations go on through the new leader.
	l := signLeaf(t, c.dirB, "spiffe://cluster.local/ns/shop/sa/after")
	meshca(t, "revoke", "--dir", c.dirB, "--serial", serialOf(l[0]), "--reason", "superseded")
	revoked = append(revoked, serialOf(l[0]))
	waitFor(t, 10*time.Second, "the new leader publishes the next revocation", func() bool { return listsAll(b) })

	crls.mu.Lock()
	defer crls.mu.Unlock()
	require.Empty(t, crls.dups)
	t.Logf("%d distinct CRLs (issuer, CRLNumber) served by both replicas, none with a duplicate number", crls.n)
	require.GreaterOrEqual(t, crls.n, 3)
	require.Len(t, c.activeGenerations(t), 1, "one active intermediate")
}

// TestHA_BoltReplicasRefuseASecondLeaseHolder: with store.type bolt each
// replica's issuance records are its own, so a client certificate one
// issued could not be renewed at another. A bbolt replica that sees
// another replica hold the Lease exits non-zero and says why; the holder
// keeps serving.
func TestHA_BoltReplicasRefuseASecondLeaseHolder(t *testing.T) {
	_, kubeconfig := meshcaInCluster(t)
	dirA := initCA(t)
	appendYAML(t, dirA, "kubernetes:\n  kubeconfig: "+kubeconfig+"\n"+
		"signers:\n  controllers:\n    leaderElection:\n      leaseDuration: 4s\n      renewDeadline: 3s\n      retryPeriod: 500ms\n")
	dirB := filepath.Join(t.TempDir(), "ca")
	out, err := exec.Command("cp", "-a", dirA, dirB).CombinedOutput()
	require.NoError(t, err, string(out))

	a := startServe(t, dirA)
	a.waitReady(t, 15*time.Second)
	waitFor(t, 10*time.Second, "replica A takes the Lease", func() bool { return strings.Contains(a.logs(), "took the lease of the singleton jobs") })
	b := startServe(t, dirB)
	var exit error
	waitFor(t, 10*time.Second, "replica B exits", func() bool {
		select {
		case exit = <-b.done:
			b.done <- exit // for the cleanup
			return true
		default:
			return false
		}
	})
	require.Error(t, exit, "non-zero exit")
	require.Contains(t, b.logs(), "holds the lease of the singleton jobs, but store.type is bolt")
	require.Contains(t, b.logs(), "run several replicas on store.type postgres")
	code, _ := get(t, "http://"+a.ops+"/readyz")
	require.Equal(t, http.StatusOK, code, "the holder keeps serving")
}

// generationStates reads every generation of the default signer: id ->
// state, and the number of active ones.
func (c *haCluster) generationStates(ctx context.Context, conn *pgx.Conn) (map[int64]string, int, error) {
	rows, err := conn.Query(ctx, "SELECT id, state FROM generations WHERE signer = ''")
	if err != nil {
		return nil, 0, err
	}
	out, active := map[int64]string{}, 0
	var id int64
	var state string
	_, err = pgx.ForEachRow(rows, []any{&id, &state}, func() error {
		out[id] = state
		if state == "active" {
			active++
		}
		return nil
	})
	return out, active, err
}

// TestHA_LeaderKilledDuringIntermediateRotation: 'meshca rotate
// intermediate' through the leader's admin socket, and SIGKILL as soon as
// the store shows the successor's first journal step (prepared). The
// follower takes the Lease; the store never holds two active
// intermediates (queried throughout); the new leader restarts the
// rotation (the operator's request was never acknowledged) and activates
// a new generation; and both replicas, the killed one restarted as a
// follower, sign with that same generation.
func TestHA_LeaderKilledDuringIntermediateRotation(t *testing.T) {
	c := newHACluster(t, "")
	a, b, _, idB := c.startPair(t)
	ctx := t.Context()
	g1 := c.activeGenerations(t)
	require.Len(t, g1, 1)

	conn, err := pgx.Connect(ctx, c.pg.URL(c.db))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	// The watcher: never two active, never none.
	var (
		mu         sync.Mutex
		violations []string
		caught     string
	)
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	killedA := make(chan time.Time, 1)
	go func() {
		defer close(watched)
		killed := false
		for {
			select {
			case <-stopWatch:
				return
			default:
			}
			states, active, err := c.generationStates(ctx, conn)
			if err != nil {
				continue
			}
			mu.Lock()
			if active != 1 {
				violations = append(violations, fmt.Sprintf("%d active generations: %v", active, states))
			}
			if !killed {
				for id, st := range states {
					if id > g1[0] {
						// The first journal step of the successor is durable.
						caught = fmt.Sprintf("generation %d %s", id, st)
						_ = a.cmd.Process.Kill()
						killedA <- time.Now()
						killed = true
					}
				}
			}
			mu.Unlock()
		}
	}()
	rotate := exec.Command(meshcaBin, "rotate", "intermediate", "--dir", c.dirA)
	out, rerr := rotate.CombinedOutput()
	var killed time.Time
	select {
	case killed = <-killedA:
	case <-time.After(10 * time.Second):
		t.Fatalf("the rotation left no journal step in the store: %v %s\n%s", rerr, out, a.logs())
	}
	<-a.exited
	mu.Lock()
	t.Logf("SIGKILLed the leader at %s (rotate: %v)", caught, rerr)
	mu.Unlock()

	waitFor(t, haTakeoverBound, "replica B takes the Lease", func() bool { return c.holder(t) == idB })
	t.Logf("takeover: replica B held the Lease %.2fs after replica A was SIGKILLed (lease duration %s)", time.Since(killed).Seconds(), haLeaseDur)

	// The Lease names B a moment before B leads (it reads its fence
	// token first); a leader-only command waits for that.
	waitFor(t, 10*time.Second, "replica B leads", func() bool { return b.metricIs(t, "meshca_lease_held", 1) })
	// Whatever A left, B signs with the store's active generation.
	waitFor(t, 5*time.Second, "B signs with the store's active generation", func() bool {
		act := c.activeGenerations(t)
		return len(act) == 1 && strings.Contains(b.logs(), fmt.Sprintf(`"generation":%d`, act[0]))
	})
	// The operator retries the unacknowledged rotation at the new leader.
	meshca(t, "rotate", "intermediate", "--dir", c.dirB)
	after := c.activeGenerations(t)
	require.Len(t, after, 1)
	require.Greater(t, after[0], g1[0])

	// A, restarted, follows: both sign (the Istio endpoint) with the same
	// active generation.
	a2 := startServe(t, c.dirA)
	a2.waitReady(t, 15*time.Second)
	rootPEM, err := os.ReadFile(filepath.Join(c.dirA, "root-cert.pem"))
	require.NoError(t, err)
	token, err := c.env.MintToken(ctx, "shop", "cart", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	inter := func(s *server) string {
		return issueWithToken(t, s, rootPEM, token, "spiffe://cluster.local/ns/shop/sa/cart")[1]
	}
	require.Equal(t, inter(b), inter(a2), "both replicas sign with one intermediate")
	require.Equal(t, c.holder(t), idB, "the restarted replica follows")
	// The follower adopts the leader's next rotation from the store.
	before := inter(b)
	meshca(t, "rotate", "intermediate", "--dir", c.dirB)
	next := c.activeGenerations(t)
	require.Greater(t, next[0], after[0])
	newB := inter(b)
	require.NotEqual(t, before, newB)
	took := waitFor(t, 5*time.Second, "the follower signs with the leader's new intermediate", func() bool { return inter(a2) == newB })
	t.Logf("the follower signed with the new intermediate %s after the rotation", took)

	close(stopWatch)
	<-watched
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, violations, "the store held other than one active intermediate")
	states, _, err := c.generationStates(context.Background(), conn)
	require.NoError(t, err)
	t.Logf("generations after the takeover: %v", states)
}

// refusedUnauthenticated reports whether err is the Istio endpoint's
// refusal of the caller's credentials (a revoked client certificate), not
// any other failure: a connection refused for reconnecting too fast
// (server.limits.maxNewConnectionsPerSecondPerAddress) is Unavailable.
func refusedUnauthenticated(err error) bool { return status.Code(err) == codes.Unauthenticated }

// istioRenew asks the Istio endpoint at addr for a certificate for id,
// authenticating with the client certificate certPEM; it returns the
// call's error.
func istioRenew(t *testing.T, addr string, rootPEM, certPEM, keyPEM []byte, id string) error {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert},
	})))
	require.NoError(t, err)
	defer conn.Close()
	csrPath, _ := writeCSRWithKey(t, t.TempDir(), id)
	csr, err := os.ReadFile(csrPath)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: string(csr), ValidityDuration: 3600})
	return err
}
