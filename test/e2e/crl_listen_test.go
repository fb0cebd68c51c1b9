package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// holdSlots opens perAddr idle TCP connections to addr from each of the
// loopback addresses 127.0.0.2 on, n addresses in all, and keeps them open
// until the test ends: what a few pods of the mesh can do to a port that
// admits them.
func holdSlots(t *testing.T, addr string, n, perAddr int) {
	t.Helper()
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}, Timeout: 2 * time.Second}
		for range perAddr {
			c, err := d.Dial("tcp", addr)
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
		}
	}
}

// healthz is the status of GET /healthz on addr within 1 s (0: no answer).
func healthz(addr string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Once crl.url is in every certificate, every workload of the mesh may
// fetch CRLs. On the ops port, the connections of four of them (16 each,
// the per-address share of the default 64) leave none for the kubelet's
// probes, which would restart meshca. crl.listen gives the CRLs a listener
// of their own: held full, it leaves the probes and /metrics alone, and it
// serves only /crl/.
func TestCRL_OnItsOwnListenerRelyingPartiesCannotStarveTheProbes(t *testing.T) {
	dir := initCA(t)
	appendYAML(t, dir, "crl:\n  listen: 127.0.0.1:0\n")
	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	m := regexp.MustCompile(`"msg":"serving operations","crl":"([^"]+)"`).FindStringSubmatch(s.logs())
	require.NotNil(t, m, "the CRL listener's address is logged:\n%s", s.logs())
	crlAddr := m[1]

	code, body := get(t, "http://"+crlAddr+"/crl/ca-crl.pem")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "-----BEGIN X509 CRL-----")
	code, _ = get(t, "http://"+s.ops+"/crl/ca-crl.pem")
	require.Equal(t, http.StatusNotFound, code, "not on the ops port too")
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		code, _ = get(t, "http://"+crlAddr+p)
		require.Equal(t, http.StatusNotFound, code, "%s is not for relying parties", p)
	}

	holdSlots(t, crlAddr, 4, 16)
	require.Equal(t, http.StatusOK, healthz(s.ops), "the probes still reach the ops port")
	code, _ = get(t, "http://"+s.ops+"/metrics")
	require.Equal(t, http.StatusOK, code)
}

// Without crl.listen the CRLs share the ops port, and four addresses hold
// every one of its connections: the limit the test above avoids.
func TestKnownLimit_CRLsOnTheOpsPortShareItsConnectionsWithTheProbes(t *testing.T) {
	dir := initCA(t)
	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	require.Equal(t, http.StatusOK, healthz(s.ops))
	holdSlots(t, s.ops, 4, 16)
	require.Equal(t, 0, healthz(s.ops), fmt.Sprintf("64 held connections leave %s no slot", s.ops))
}
