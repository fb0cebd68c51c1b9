package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/kubeenv"
)

// adminAddress waits for serve's "admin API listening" line and returns
// the address.
func (s *server) adminAddress(t *testing.T) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		for _, l := range strings.Split(s.logs(), "\n") {
			var ev struct {
				Msg     string `json:"msg"`
				Address string `json:"address"`
			}
			if json.Unmarshal([]byte(l), &ev) == nil && ev.Msg == "admin API listening" {
				addr = ev.Address
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "no admin listener:\n%s", s.logs())
	return addr
}

// TestAdminTCP_KubernetesRBACAndAdminCertificates runs serve with
// server.adminListen against the real apiserver, meshca bound to
// deploy/rbac and the operators' roles of deploy/examples/admin-rbac.yaml:
// a token's user is authorized per verb by SubjectAccessReview (revoker may
// revoke, viewer may only read, anyone else nothing), an admin client
// certificate works until it is revoked, and every refusal is audited.
func TestAdminTCP_KubernetesRBACAndAdminCertificates(t *testing.T) {
	env, err := kubeenv.Start()
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	ctx := context.Background()
	root, err := kubeenv.RepoRoot()
	require.NoError(t, err)
	for _, ns := range []string{"istio-system", "meshca-admins"} {
		require.NoError(t, env.CreateNamespace(ctx, ns))
	}
	for _, f := range []string{"deploy/rbac/serviceaccount.yaml", "deploy/rbac/istio-endpoint.yaml", "deploy/rbac/admin-endpoint.yaml", "deploy/examples/admin-rbac.yaml",
		"deploy/rbac/controllers.yaml"} {
		_, err := env.ApplyYAMLFile(ctx, filepath.Join(root, f))
		require.NoError(t, err, f)
	}
	tokens := map[string]string{}
	tmp := t.TempDir()
	for _, sa := range []string{"revoker", "viewer", "other"} {
		_, err := env.EnsureServiceAccount(ctx, "meshca-admins", sa)
		require.NoError(t, err)
		tok, err := env.MintToken(ctx, "meshca-admins", sa, []string{"meshca-admin"}, time.Hour)
		require.NoError(t, err)
		tokens[sa] = filepath.Join(tmp, sa+".token")
		require.NoError(t, os.WriteFile(tokens[sa], []byte(tok), 0o600))
	}
	// A token for the workload port is not an admin token.
	tok, err := env.MintToken(ctx, "meshca-admins", "revoker", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	tokens["wrong-audience"] = filepath.Join(tmp, "wrong.token")
	require.NoError(t, os.WriteFile(tokens["wrong-audience"], []byte(tok), 0o600))

	saCfg, _, err := env.ClientAs(ctx, "istio-system", "meshca")
	require.NoError(t, err)
	dir := initCA(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, tokenKubeconfig(t, saCfg), 0o600))
	const alice = "spiffe://cluster.local/ns/meshca-admins/sa/alice"
	cfgPath := filepath.Join(dir, "meshca.yaml")
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	b = append(b, []byte("kubernetes:\n  kubeconfig: "+kubeconfig+"\nserver:\n  adminListen: 127.0.0.1:0\n  adminIdentities: [\""+alice+"\"]\n")...)
	require.NoError(t, os.WriteFile(cfgPath, b, 0o644))

	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	addr := s.adminAddress(t)
	remote := func(args ...string) []string {
		return append(args, "--admin-address", addr, "--ca", filepath.Join(dir, "root-cert.pem"), "--server-name", "localhost")
	}
	serial := signedSerial(t, dir)

	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(rootPEM))
	// The gRPC port's TLS: meshca's serving certificate, X25519MLKEM768
	// preferred; HTTP/1.1.
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	cs := tc.ConnectionState()
	require.Equal(t, tls.X25519MLKEM768, cs.CurveID)
	require.Equal(t, "http/1.1", cs.NegotiatedProtocol)
	require.Equal(t, []string{"localhost", "meshca.istio-system.svc", "meshca.istio-system.svc.cluster.local"}, sortedNames(cs.PeerCertificates[0].DNSNames))
	tc.Close()

	// No credentials: 401; the local-only sign route is not served here.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	resp, err := hc.Get("https://" + addr + "/v1/status")
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.JSONEq(t, `{"error":"present an admin client certificate issued by this meshca, or a Kubernetes bearer token"}`, string(b))
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/v1/sign", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+readFile(t, tokens["revoker"]))
	resp, err = hc.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// revoker: reads and revokes.
	require.Contains(t, meshca(t, remote("status", "--token-file", tokens["revoker"])...), "active generation:  1")
	out := meshca(t, remote("revoke", "--token-file", tokens["revoker"], "--serial", serial, "--reason", "keyCompromise")...)
	require.Contains(t, out, serial)
	require.Contains(t, meshca(t, remote("revocations", "list", "--token-file", tokens["revoker"])...), "k8s:system:serviceaccount:meshca-admins:revoker")

	// viewer: reads, may not revoke.
	require.Contains(t, meshca(t, remote("revocations", "list", "--token-file", tokens["viewer"])...), serial)
	require.Equal(t, `Error: user "system:serviceaccount:meshca-admins:viewer" may not revoke revocations.meshca.io (Kubernetes RBAC)`,
		errorLine(t, meshcaFails(t, remote("revoke", "--token-file", tokens["viewer"], "--serial", "0a", "--reason", "1")...)))
	// other: nothing.
	require.Equal(t, `Error: user "system:serviceaccount:meshca-admins:other" may not get status.meshca.io (Kubernetes RBAC)`,
		errorLine(t, meshcaFails(t, remote("status", "--token-file", tokens["other"])...)))
	// A token of another audience does not authenticate.
	require.Contains(t, errorLine(t, meshcaFails(t, remote("status", "--token-file", tokens["wrong-audience"])...)), "token_review: ")

	// Client certificates: alice is an admin, bob is not.
	certFor := func(name string) (string, string) {
		id := "spiffe://cluster.local/ns/meshca-admins/sa/" + name
		csr, key := writeCSRWithKey(t, t.TempDir(), id)
		chain := meshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", id, "--ttl", "1h")
		cp, kp := filepath.Join(tmp, name+".pem"), filepath.Join(tmp, name+".key")
		require.NoError(t, os.WriteFile(cp, []byte(chain), 0o600))
		require.NoError(t, os.WriteFile(kp, key, 0o600))
		return cp, kp
	}
	aCert, aKey := certFor("alice")
	bCert, bKey := certFor("bob")
	require.Contains(t, meshca(t, remote("records", "list", "--cert", aCert, "--key", aKey)...), alice)
	require.Equal(t, "Error: spiffe://cluster.local/ns/meshca-admins/sa/bob is not an admin identity of this meshca (server.adminIdentities)",
		errorLine(t, meshcaFails(t, remote("status", "--cert", bCert, "--key", bKey)...)))

	// A certificate for alice's SPIFFE ID issued through the Istio
	// workload port (here renewed with alice's own certificate, as
	// istio-agent does) is not an admin certificate.
	chain, wKey := callIstioCAWithKey(t, s.grpc, "localhost", rootPEM, []byte(readFile(t, aCert)), []byte(readFile(t, aKey)), alice)
	wCert, wKeyPath := filepath.Join(tmp, "alice-workload.pem"), filepath.Join(tmp, "alice-workload.key")
	require.NoError(t, os.WriteFile(wCert, []byte(strings.Join(chain, "")), 0o600))
	require.NoError(t, os.WriteFile(wKeyPath, wKey, 0o600))
	require.Equal(t, "Error: the client certificate of "+alice+" was not issued for admin use: mint admin certificates with 'meshca sign' (on the admin socket or offline with --dir), not through a workload front door",
		errorLine(t, meshcaFails(t, remote("revoke", "--cert", wCert, "--key", wKeyPath, "--serial", "0b", "--reason", "1")...)))

	// alice's certificate, once revoked, no longer authenticates.
	aliceSerial := hex.EncodeToString(splitPEM(t, readFile(t, aCert))[0].SerialNumber.Bytes())
	meshca(t, "revoke", "--dir", dir, "--serial", aliceSerial, "--reason", "keyCompromise")
	require.Equal(t, "Error: client_certificate: client certificate is revoked",
		errorLine(t, meshcaFails(t, remote("status", "--cert", aCert, "--key", aKey)...)))

	// stderr is read by another goroutine: wait for the audit lines.
	for _, want := range []string{
		`"event":"admin.denied","action":"revoke revocations","route":"POST /v1/revocations","requester":"k8s:system:serviceaccount:meshca-admins:viewer","code":403,"reason":"rbac_denied"`,
		`"event":"admin.denied","action":"get status","route":"GET /v1/status","requester":"k8s:system:serviceaccount:meshca-admins:other","code":403,"reason":"rbac_denied"`,
		`"event":"admin.denied","action":"get status","route":"GET /v1/status","requester":"admin:spiffe://cluster.local/ns/meshca-admins/sa/bob","code":403,"reason":"not_an_admin"`,
		`"event":"admin.denied","action":"get status","route":"GET /v1/status","requester":"","code":401,"reason":"revoked_certificate"`,
		`"event":"admin.denied","action":"revoke revocations","route":"POST /v1/revocations","requester":"admin:` + alice + `","code":403,"reason":"not_admin_issued"`,
		`"event":"admin.call","action":"revoke revocations","route":"POST /v1/revocations","requester":"k8s:system:serviceaccount:meshca-admins:revoker","code":200`,
	} {
		waitFor(t, 10*time.Second, "the audit line "+want, func() bool { return strings.Contains(s.logs(), want) })
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

func sortedNames(n []string) []string {
	n = append([]string(nil), n...)
	slices.Sort(n)
	return n
}
