package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestServe_WaitingForTheLeaseServesProbes starts a replica whose store
// has no intermediate yet while another holder (one that never renews)
// holds the Lease: the replica may not mint, and waits for the holder's
// first intermediate. Meanwhile it answers the kubelet's probes as a live
// process that is not ready (/healthz 200, /readyz 503) and Prometheus's
// scrapes, instead of nothing: a startup probe on /healthz no longer
// restarts a replica whose leader is slow to mint. When the Lease expires
// the replica takes it, mints and becomes ready.
func TestServe_WaitingForTheLeaseServesProbes(t *testing.T) {
	c := newHACluster(t, "")
	// Seconds the absent holder's Lease blocks a candidate, from when it
	// first reads it; the probes below run until 5 s before that.
	const hold = 15
	_, err := c.env.Client.CoordinationV1().Leases("istio-system").Create(t.Context(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: haLease, Namespace: "istio-system"},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To("a-replica-that-never-minted"),
			LeaseDurationSeconds: ptr.To(int32(hold)),
			AcquireTime:          &metav1.MicroTime{Time: time.Now()},
			RenewTime:            &metav1.MicroTime{Time: time.Now()},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	s := startServeOps(t, c.dirA)
	started := time.Now()
	waitFor(t, 10*time.Second, "the replica waits for the lease holder's intermediate", func() bool {
		return strings.Contains(s.logs(), "no usable active intermediate; waiting for the lease holder to make one")
	})
	// While it waits (client-go counts the Lease's duration from when the
	// candidate first saw it), probe as the kubelet and Prometheus do.
	probes := 0
	for probes == 0 || time.Since(started) < (hold-5)*time.Second {
		code, _ := get(t, "http://"+s.ops+"/healthz")
		require.Equal(t, http.StatusOK, code, "/healthz while waiting")
		code, body := get(t, "http://"+s.ops+"/readyz")
		require.Equal(t, http.StatusServiceUnavailable, code, "/readyz while waiting")
		require.Equal(t, "not ready\n", body)
		// The CRLs are not built yet: a relying party is told to retry,
		// not that there is no such CRL.
		resp, err := http.Get("http://" + s.ops + "/crl/ca-crl.pem")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "/crl/ while waiting")
		require.Equal(t, "5", resp.Header.Get("Retry-After"))
		if strings.Contains(s.logs(), `"msg":"meshca ready"`) {
			t.Fatalf("the replica became ready while another held the Lease:\n%s", s.logs())
		}
		probes++
		time.Sleep(200 * time.Millisecond)
	}
	require.Positive(t, probes)
	leading, ok := s.metricSum(t, "meshca_lease_held")
	require.True(t, ok, "/metrics serves meshca's metrics while the replica waits")
	require.Zero(t, leading)
	require.True(t, s.metricIs(t, "meshca_ready", 0), "meshca_ready while waiting")
	require.Contains(t, s.logs(), `"msg":"not ready","reason":"starting: opening the CA`, "the reason is logged once")
	require.Equal(t, 1, strings.Count(s.logs(), `"msg":"not ready"`), "logged when it changes, not per probe")
	require.Empty(t, c.activeGenerations(t), "nothing minted while another holds the Lease")

	// The absent holder's Lease runs out: the replica takes it and mints.
	took := s.waitReady(t, 30*time.Second)
	t.Logf("ready %s after the probes", took)
	require.Equal(t, c.holder(t), identity(t, s))
	require.Len(t, c.activeGenerations(t), 1)
	waitFor(t, 10*time.Second, "the replica holds the Lease", func() bool { return s.metricIs(t, "meshca_lease_held", 1) })
	require.True(t, s.metricIs(t, "meshca_ready", 1))
	code, _ := get(t, "http://"+s.ops+"/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get(t, "http://"+s.ops+"/crl/ca-crl.pem")
	require.Equal(t, http.StatusOK, code, "the CRLs once the CA is open")
}

// TestServe_ATakenGRPCPortFailsBeforeAnythingIsIssued: serve binds its gRPC
// port before it loads the CA, so a port conflict ends it with the
// configuration key and the system's error, and leaves no issuance record
// behind (before, it had issued and recorded its serving certificate).
func TestServe_ATakenGRPCPortFailsBeforeAnythingIsIssued(t *testing.T) {
	dir := initCA(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()

	stderr := refusedServe(t, "--dir", dir, "--listen", taken.Addr().String(), "--ops-listen", "127.0.0.1:0")
	require.Contains(t, stderr, "server.listen "+taken.Addr().String()+": ")
	require.Contains(t, stderr, "address already in use")

	require.Empty(t, strings.TrimSpace(meshca(t, "records", "list", "--dir", dir, "-o", "json")), "no certificate issued or recorded")
}

// TestServe_ARefusalLateInStartLogsOnlyItsReason: a start refused after the
// CA and the singleton jobs are up (here an admin socket in a directory
// others may write) stops the jobs before the store closes. Before, the
// pruner's pass then failed on the closed store and logged an ERROR, and
// the alert rules a WARN, beside the one reason that mattered.
func TestServe_ARefusalLateInStartLogsOnlyItsReason(t *testing.T) {
	dir := initCA(t)
	open := filepath.Join(t.TempDir(), "open")
	require.NoError(t, os.Mkdir(open, 0o700))
	require.NoError(t, os.Chmod(open, 0o777))
	f, err := os.OpenFile(filepath.Join(dir, "meshca.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fmt.Fprintf(f, "server:\n  adminSocket: %s\n", filepath.Join(open, "admin.sock"))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	// The jobs' first passes race with the refusal: several starts give
	// the old order many chances to show.
	for range 8 {
		stderr := refusedServe(t, "--dir", dir, "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0")
		require.Contains(t, stderr, "is writable by others (mode 0777)")
		for _, line := range strings.Split(stderr, "\n") {
			require.NotContains(t, line, `"level":"ERROR"`, stderr)
			require.NotContains(t, line, `"level":"WARN"`, stderr)
		}
	}
}

// refusedServe runs meshca serve with args, which must end it with an
// error within 30 s, and returns what it wrote to stderr.
func refusedServe(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(meshcaBin, append([]string{"serve"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	require.NoError(t, cmd.Start())
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.Error(t, err, "non-zero exit")
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("serve did not exit:\n%s", stderr.String())
	}
	return stderr.String()
}
