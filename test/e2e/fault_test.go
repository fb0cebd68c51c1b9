package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/meshca/meshca/test/pgenv"
)

// TestFaults is the whole-system fault suite: for each fault a fresh
// meshca (the built binary) on real dependencies serves a steady load on
// its Istio endpoint while the fault is injected and cleared. For every
// fault: no call fails with a code other than Unavailable or
// ResourceExhausted (the codes istio-agent retries), every certificate a
// caller got back has its issuance record in the store afterwards, the
// service recovers within faultRecoveryBound of the fault clearing, and the
// alert rule that covers the fault (if one does) fires and resolves. The
// table of the runs is logged and written to .meshca/fault-suite.md.
func TestFaults(t *testing.T) {
	t.Cleanup(func() { writeFaultTable(t) })
	t.Run("VaultSealed30s", testFaultVaultSealed)
	t.Run("APIServerStopped20s", testFaultAPIServerStopped)
	t.Run("LeaderSIGKILL", testFaultLeaderKilled)
	t.Run("PostgresRestarted", testFaultPostgresRestarted)
	t.Run("BoltDiskFull", testFaultBoltDiskFull)
}

// clientCert signs a client certificate for workloadID with 'meshca sign'
// on the configuration args and returns its chain, key and the mesh root.
func clientCert(t *testing.T, dir string) (chain, key, root []byte) {
	t.Helper()
	csrPath, keyPEM := writeCSRWithKey(t, t.TempDir(), workloadID)
	chainPEM := meshca(t, "sign", "--dir", dir, "--csr", csrPath, "--identity", workloadID)
	certs := splitPEM(t, chainPEM)
	require.GreaterOrEqual(t, len(certs), 3)
	return []byte(chainPEM), keyPEM, pemOf(certs[len(certs)-1])
}

// holdFault keeps a fault in place for d from since: the fault's duration
// is what is being tested, so this waits on a timer, not on a condition.
func holdFault(since time.Time, d time.Duration) {
	<-time.After(time.Until(since.Add(d)))
}

// warmUp runs the load until 40 calls have succeeded, so that the fault
// starts on a serving system.
func warmUp(t *testing.T, l *faultLoad, logs func() string) {
	t.Helper()
	start := time.Now().Add(-time.Hour)
	ok := false
	waitFor(t, 20*time.Second, "40 successful calls before the fault", func() bool { ok = l.okSince(start) >= 40; return ok })
	require.True(t, ok, logs())
}

// loadOne starts the fault load and the revoker on the one serve s of
// the CA in dir, once it is ready, and warms the load up.
func loadOne(t *testing.T, s *server, dir string) (*faultLoad, *revoker) {
	t.Helper()
	s.waitReady(t, 15*time.Second)
	chain, key, root := clientCert(t, dir)
	l := startFaultLoad(t, []string{s.grpc}, root, chain, key, workloadID)
	warmUp(t, l, s.logs)
	return l, startRevoker(t, l, dir)
}

// 1. Vault sealed: meshca on a Vault PKI root keeps signing with the
// intermediate it holds; RootSourceUnreachable fires after
// rootSourceUnhealthyFor and resolves once Vault is unsealed.
func testFaultVaultSealed(t *testing.T) {
	const mount = "pki-faults"
	vr := startVaultRoots(t, mount)
	v := vr.v
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hook := startWebhook(t)
	dir := vr.caDir(t, mount, "    healthInterval: 1s\n    initialBackoff: 200ms\n    maxBackoff: 1s\n", hook.yaml(t, "    rootSourceUnhealthyFor: 5s\n"))

	s := startServe(t, dir)
	l, rv := loadOne(t, s, dir)

	sealed := time.Now()
	require.NoError(t, v.Seal(ctx))
	// MeshCARootSourceDown's expression (meshca_root_source_up == 0) holds
	// while sealed; its "for" (10 minutes) outlasts the fault.
	waitFor(t, 10*time.Second, "meshca_root_source_up goes to 0 while Vault is sealed", func() bool { return s.metricIs(t, "meshca_root_source_up", 0) })
	waitFor(t, 30*time.Second, "RootSourceUnreachable fires while Vault is sealed", func() bool { return hook.has("firing RootSourceUnreachable") })
	holdFault(sealed, 30*time.Second)
	require.NoError(t, v.Unseal(ctx))
	cleared := time.Now()
	l.waitRecovered(t, cleared, s.logs)
	waitFor(t, 10*time.Second, "meshca_root_source_up goes back to 1 after the unseal", func() bool { return s.metricIs(t, "meshca_root_source_up", 1) })
	waitFor(t, 25*time.Second, "RootSourceUnreachable resolves after the unseal", func() bool { return hook.has("resolved RootSourceUnreachable") })
	l.stop()

	r := l.result("Vault sealed 30 s (Vault root)", cleared)
	r.Alerts = hook.String()
	rv.check(t, &r, "--dir", dir)
	requireFaultResult(t, r, s.logs)
	requireRecorded(t, r.Serials, "--dir", dir)
}

// 2. The apiserver stopped for 20 s (etcd keeps running), with the
// default Lease timings (15 s, renew deadline 10 s): the Istio endpoint
// authenticates client certificates without the apiserver. meshca serve
// runs as under the kubelet (kubeletServe): if it exits, it is started
// again, and the exits are reported in the table.
func testFaultAPIServerStopped(t *testing.T) {
	env, kubeconfig := meshcaInCluster(t, "shop")
	hook := startWebhook(t)
	dir := initCA(t)
	appendYAML(t, dir, "kubernetes:\n  kubeconfig: "+kubeconfig+"\ntrustBundle:\n  enabled: true\n"+hook.yaml(t, ""))
	chain, key, root := clientCert(t, dir)
	k := startKubeletServe(t, dir)
	k.current().waitReady(t, 15*time.Second)
	waitFor(t, 30*time.Second, "meshca leads", func() bool { return k.leads(t) })
	l := startFaultLoad(t, []string{k.grpc}, root, chain, key, workloadID)
	warmUp(t, l, k.logs)
	rv := startRevoker(t, l, dir)

	stopped := time.Now()
	require.NoError(t, env.StopAPIServer())
	// Unable to renew for renewDeadline (10 s), meshca stops its singleton
	// jobs before the Lease can expire for another replica:
	// meshca_lease_held 0, MeshCANoLeaseHolder's expression (its "for",
	// 5 minutes, outlasts the outage).
	var stepDown time.Duration
	for time.Since(stopped) < 20*time.Second {
		if stepDown == 0 && k.metricIs(t, "meshca_lease_held", 0) {
			stepDown = time.Since(stopped)
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, env.RestartAPIServer())
	cleared := time.Now()
	// The fault is over for meshca once it holds the Lease again (its
	// singleton jobs run): the load goes on until then. Not fatal, so that
	// the row is recorded whatever happened; requireFaultResult asserts
	// the exits and the recovery.
	lead, leads := time.Duration(0), false
	for !leads && time.Since(cleared) < faultRecoveryBound+30*time.Second {
		leads = k.leads(t)
		lead = time.Since(cleared)
		time.Sleep(50 * time.Millisecond)
	}
	l.awaitRecovery(cleared)
	l.stop()

	r := l.result("kube-apiserver stopped 20 s", cleared)
	r.Alerts = hook.String()
	r.Exits = k.restarts()
	rv.check(t, &r, "--dir", dir)
	t.Logf("meshca exited %d times: %q; it stopped leading %.1fs into the outage and held the Lease again %.1fs after the apiserver was back",
		len(r.Exits), r.Exits, stepDown.Seconds(), lead.Seconds())
	requireFaultResult(t, r, k.logs)
	requireRecorded(t, r.Serials, "--dir", dir)
	require.Positive(t, stepDown, "meshca kept running its singleton jobs without the Lease:\n%s", k.logs())
	require.True(t, leads, "meshca did not hold the Lease again within %s of the apiserver's restart:\n%s", lead, k.logs())
	require.True(t, k.metricIs(t, "meshca_lease_lost_total", 1), "meshca_lease_lost_total counts the one Lease lost")
}

// 3. The leader SIGKILLed: two replicas as main runs them in HA
// (newHACluster: one PostgreSQL database, one key store directory, the
// Lease under deploy/rbac, leaseDuration 4 s); the load goes to both
// (round robin, as a Service's endpoints) and revocations go to the Lease
// holder (a follower refuses them), the new one after the kill. The survivor keeps signing, takes the
// Lease within haTakeoverBound of the kill and runs the singleton jobs
// (meshca_controller_leader 1), and the database holds every certificate
// and revocation either replica acknowledged.
func testFaultLeaderKilled(t *testing.T) {
	hook := startWebhook(t)
	c := newHACluster(t, "trustBundle:\n  enabled: true\n"+hook.yaml(t, ""))
	a, b, _, idB := c.startPair(t)
	waitFor(t, 30*time.Second, "replica A runs the singleton jobs", func() bool {
		return a.metricIs(t, "meshca_lease_held", 1) && a.metricIs(t, "meshca_controller_leader", 1)
	})
	require.True(t, b.metricIs(t, "meshca_lease_held", 0) && b.metricIs(t, "meshca_controller_leader", 0), "replica B follows")
	chain, key, root := clientCert(t, c.dirB)
	logs := func() string { return "replica A:\n" + a.logs() + "\nreplica B:\n" + b.logs() }
	l := startFaultLoad(t, []string{a.grpc, b.grpc}, root, chain, key, workloadID)
	warmUp(t, l, logs)
	// The load reaches both replicas.
	for _, s := range []*server{a, b} {
		issued, _ := s.metricSum(t, "meshca_certificates_issued_total")
		require.Positive(t, issued, "a replica got no calls")
	}
	// B first: it refuses while it follows, and acknowledges once it
	// holds the Lease; A's configuration goes through A's admin socket
	// while A runs, and straight into the database once A is dead (meshca
	// revoke without a serve).
	rv := startRevoker(t, l, c.dirB, c.dirA)

	a.kill(t)
	cleared := time.Now()
	took := waitFor(t, haTakeoverBound, "replica B takes the Lease", func() bool { return c.holder(t) == idB })
	t.Logf("replica B held the Lease %.2fs after the kill (lease duration %s, bound %s)", took.Seconds(), haLeaseDur, haTakeoverBound)
	waitFor(t, faultRecoveryBound, "replica B runs the singleton jobs", func() bool {
		return b.metricIs(t, "meshca_lease_held", 1) && b.metricIs(t, "meshca_controller_leader", 1)
	})
	lead := time.Since(cleared)
	l.waitRecovered(t, cleared, logs)
	// Revocations go on through the new holder.
	waitFor(t, faultRecoveryBound, "a revocation acknowledged by replica B", func() bool { return rv.ackedBy(c.dirB) > 0 })
	l.stop()

	r := l.result("leader SIGKILLed (2 replicas, PostgreSQL)", cleared)
	r.Recovery = max(r.Recovery, lead)
	r.Alerts = hook.String()
	rv.check(t, &r, "--dir", c.dirB)
	t.Logf("replica B ran the singleton jobs %.1fs after the kill; revocations acknowledged through A's configuration %d, through B's %d",
		lead.Seconds(), rv.ackedBy(c.dirA), rv.ackedBy(c.dirB))
	requireFaultResult(t, r, logs)
	requireRecorded(t, r.Serials, "--dir", c.dirB)
}

// 4. PostgreSQL restarted (fast shutdown, start on the same data): signing
// fails with Unavailable while the database is down and resumes without
// restarting meshca.
func testFaultPostgresRestarted(t *testing.T) {
	pg, err := pgenv.Start()
	require.NoError(t, err)
	t.Cleanup(pg.Stop)
	db := pg.CreateDatabase(t)
	hook := startWebhook(t)
	dir := initCA(t)
	usePostgres(t, pg, dir, db)
	appendYAML(t, dir, hook.yaml(t, ""))
	s := startServe(t, dir)
	l, rv := loadOne(t, s, dir)

	down := time.Now()
	require.NoError(t, pg.Restart())
	cleared := time.Now()
	l.waitRecovered(t, cleared, s.logs)
	l.stop()
	requireRefusalsCounted(t, s, l)

	r := l.result(fmt.Sprintf("PostgreSQL restarted (fast shutdown and start: %.1f s)", cleared.Sub(down).Seconds()), cleared)
	r.Alerts = hook.String()
	rv.check(t, &r, "--dir", dir)
	requireFaultResult(t, r, s.logs)
	requireNoInternals(t, r, db, pg.ConnString(db), "127.0.0.1")
	requireRecorded(t, r.Serials, "--dir", dir)
}

// 5. The bbolt store's disk full, single replica: RLIMIT_FSIZE of the
// serve process is lowered, at run time, below the size of its store file,
// so that every write of a data page fails (EFBIG, as ENOSPC would: bbolt
// rolls the transaction back before its meta page). Unprivileged: a tmpfs
// mount would need CAP_SYS_ADMIN. After the limit is raised again meshca
// signs without a restart, and after a SIGKILL the file holds every
// acknowledged certificate.
func testFaultBoltDiskFull(t *testing.T) {
	hook := startWebhook(t)
	dir := initCA(t)
	appendYAML(t, dir, hook.yaml(t, ""))
	s := startServe(t, dir)
	l, rv := loadOne(t, s, dir)

	pid := s.cmd.Process.Pid
	var orig unix.Rlimit
	require.NoError(t, unix.Prlimit(pid, unix.RLIMIT_FSIZE, nil, &orig))
	// Pages 0 and 1 are bbolt's meta pages; every other page lies past
	// 8 KiB (bbolt's page size is the OS page size, 4 KiB here).
	require.NoError(t, unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 8192, Max: orig.Max}, nil))
	full := time.Now()
	waitFor(t, 10*time.Second, "signing fails while the disk is full", func() bool {
		for _, c := range l.snapshot() {
			if c.sent.After(full) && c.code != 0 {
				return true
			}
		}
		return false
	})
	holdFault(full, 10*time.Second)
	require.NoError(t, unix.Prlimit(pid, unix.RLIMIT_FSIZE, &orig, nil))
	cleared := time.Now()
	l.waitRecovered(t, cleared, s.logs)
	l.stop()
	require.True(t, s.metricIs(t, "meshca_store_healthy", 1), "the store failed closed:\n%s", s.logs())
	requireRefusalsCounted(t, s, l)

	rv.stop()
	// Durable, not just in memory: the file after a crash.
	s.kill(t)
	r := l.result("bbolt disk full 10 s (RLIMIT_FSIZE)", cleared)
	r.Alerts = hook.String()
	rv.check(t, &r, "--dir", dir)
	requireFaultResult(t, r, s.logs)
	requireNoInternals(t, r, dir)
	requireRecorded(t, r.Serials, "--dir", dir)
}
