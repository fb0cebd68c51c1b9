package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/pgenv"
)

const workloadID = "spiffe://cluster.local/ns/default/sa/app"

func TestServe_ReadyWithinTwoSecondsWithHealthAndMetrics(t *testing.T) {
	dir := initCA(t)
	s := startServe(t, dir)
	took := s.waitReady(t, 2*time.Second)
	t.Logf("ready %s after the listeners were up", took)

	code, body := get(t, "http://"+s.ops+"/healthz")
	require.Equal(t, 200, code)
	require.Equal(t, "ok\n", body)
	code, body = get(t, "http://"+s.ops+"/metrics")
	require.Equal(t, 200, code)
	require.Contains(t, body, "meshca_store_pruned_records_total 0\n")
	// The intermediate rotation reports its phase (0: idle) and when the
	// active generation was activated.
	require.Contains(t, body, "meshca_rotation_phase{ca=\"intermediate\"} 0\n")
	require.Contains(t, body, "meshca_rotation_last_success_timestamp_seconds{ca=\"intermediate\"} ")

	// Graceful shutdown on SIGTERM exits 0.
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-s.done:
		require.NoError(t, err, s.logs())
		s.done <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("meshca serve did not stop within 20s of SIGTERM")
	}
	require.Contains(t, s.logs(), `"msg":"shutting down"`)
}

// TestCrashSafety_RecordSurvivesSIGKILLAfterAcknowledgement shows that a
// process crash after the acknowledgement loses nothing and leaves a store
// that opens cleanly. It cannot show that the record was fsynced: the page
// cache survives a SIGKILL, and this test passes with a store that never
// syncs. test/durability checks the fsync order with strace.
func TestCrashSafety_RecordSurvivesSIGKILLAfterAcknowledgement(t *testing.T) {
	dir := initCA(t)
	csr := writeCSR(t, t.TempDir(), workloadID)

	cmd := exec.Command(meshcaBin, "sign", "--dir", dir, "--csr", csr, "--identity", workloadID)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	// Read until the leaf (the acknowledgement) has been printed, then kill
	// at once, without letting the process close its store.
	var leafPEM bytes.Buffer
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err, "meshca sign ended before acknowledging")
		leafPEM.WriteString(line)
		if line == "-----END CERTIFICATE-----\n" {
			break
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_, _ = io.Copy(io.Discard, r)
	_ = cmd.Wait()

	leaf := splitPEM(t, leafPEM.String())
	require.Len(t, leaf, 1)
	serial := hex.EncodeToString(leaf[0].SerialNumber.Bytes())

	// Restart the service on the same store: it opens cleanly and is ready.
	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-s.done)
	s.done <- nil

	var rec struct {
		Serial, Identity, Fingerprint string
	}
	require.NoError(t, json.Unmarshal([]byte(meshca(t, "records", "get", serial, "--dir", dir)), &rec))
	sum := sha256.Sum256(leaf[0].Raw)
	require.Equal(t, serial, rec.Serial)
	require.Equal(t, workloadID, rec.Identity)
	require.Equal(t, hex.EncodeToString(sum[:]), rec.Fingerprint)
}

// dirNames lists the file names of dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// meshcaStderr runs meshca, which must succeed, and returns its stdout and
// stderr.
func meshcaStderr(t *testing.T, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(meshcaBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "meshca %v: %s", args, stderr.String())
	return stdout.String(), stderr.String()
}

// By default the offline export writes no ca-crl.pem: nothing refreshes a
// Secret made by hand from the folder, and Istio enforces CRLs only when
// ca-crl.pem is present (an expired one would fail every handshake).
func TestCACerts_NoCRLByDefault(t *testing.T) {
	dir := initCA(t)
	out := filepath.Join(t.TempDir(), "cacerts")
	stdout, stderr := meshcaStderr(t, "cacerts", "--dir", dir, "--out", out)
	require.Equal(t, []string{"ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"}, dirNames(t, out))
	require.Equal(t, "Wrote Istio cacerts for generation 1 to "+out+": [ca-cert.pem ca-key.pem cert-chain.pem root-cert.pem]\n", stdout)
	require.Empty(t, stderr)

	// Written again without --crl after an export with it, the folder
	// loses the earlier export's ca-crl.pem, and says so.
	meshcaStderr(t, "cacerts", "--dir", dir, "--out", out, "--crl")
	require.Contains(t, dirNames(t, out), "ca-crl.pem")
	stdout, stderr = meshcaStderr(t, "cacerts", "--dir", dir, "--out", out)
	require.Equal(t, []string{"ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"}, dirNames(t, out))
	require.Equal(t, "Wrote Istio cacerts for generation 1 to "+out+": [ca-cert.pem ca-key.pem cert-chain.pem root-cert.pem]\n", stdout)
	require.Equal(t, "warning: removed ca-crl.pem from "+out+": it was an earlier export's and does not match these files (write it again with --crl)\n", stderr)
}

func TestCACerts_FilesFollowIstioRules(t *testing.T) {
	dir := initCA(t)
	out := filepath.Join(t.TempDir(), "cacerts")
	start := time.Now().UTC().Truncate(time.Second)
	_, stderr := meshcaStderr(t, "cacerts", "--dir", dir, "--out", out, "--crl")
	require.Equal(t, []string{"ca-cert.pem", "ca-crl.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"}, dirNames(t, out))
	fi, err := os.Stat(filepath.Join(out, "ca-key.pem"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	read := func(n string) string {
		b, err := os.ReadFile(filepath.Join(out, n))
		require.NoError(t, err)
		return string(b)
	}
	caCert := splitPEM(t, read("ca-cert.pem"))
	chain := splitPEM(t, read("cert-chain.pem"))
	roots := splitPEM(t, read("root-cert.pem"))
	require.Len(t, caCert, 1)
	require.Len(t, chain, 2, "cert-chain.pem = intermediate, root")
	require.True(t, chain[0].Equal(caCert[0]), "cert-chain.pem starts with ca-cert.pem")
	require.True(t, chain[1].Equal(roots[0]), "cert-chain.pem ends with the root")
	require.Len(t, roots, 1)
	require.NoError(t, roots[0].CheckSignatureFrom(roots[0]), "root-cert.pem is the self-signed root")
	rootFile, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	require.Equal(t, string(rootFile), read("root-cert.pem"))

	// Independent checks with openssl: the chain verifies strictly and the key matches.
	o, err := exec.Command("openssl", "verify", "-x509_strict", "-CAfile", filepath.Join(out, "root-cert.pem"),
		filepath.Join(out, "ca-cert.pem")).CombinedOutput()
	require.NoError(t, err, string(o))
	require.Equal(t, filepath.Join(out, "ca-cert.pem")+": OK\n", string(o))
	certPub, err := exec.Command("openssl", "x509", "-in", filepath.Join(out, "ca-cert.pem"), "-noout", "-pubkey").Output()
	require.NoError(t, err)
	keyPub, err := exec.Command("openssl", "pkey", "-in", filepath.Join(out, "ca-key.pem"), "-pubout").Output()
	require.NoError(t, err)
	require.Equal(t, string(certPub), string(keyPub), "ca-key.pem must match ca-cert.pem")
	txt, err := exec.Command("openssl", "x509", "-in", filepath.Join(out, "ca-cert.pem"), "-noout", "-ext", "basicConstraints,keyUsage").Output()
	require.NoError(t, err)
	require.Contains(t, string(txt), "CA:TRUE, pathlen:0")
	require.Contains(t, string(txt), "Certificate Sign, CRL Sign")

	// ca-crl.pem holds a CRL from every certificate of cert-chain.pem (Istio
	// 1.27+ refuses it otherwise): -crl_check_all needs the root's CRL for
	// ca-cert.pem.
	o, err = exec.Command("openssl", "verify", "-crl_check_all", "-CAfile", filepath.Join(out, "root-cert.pem"),
		"-CRLfile", filepath.Join(out, "ca-crl.pem"), filepath.Join(out, "ca-cert.pem")).CombinedOutput()
	require.NoError(t, err, string(o))
	require.Equal(t, 2, strings.Count(read("ca-crl.pem"), "-----BEGIN X509 CRL-----"), "the intermediate's CRL and the root's")

	// The operator is told when the CRLs expire: the earliest nextUpdate,
	// crl.validity (24h) after now.
	var next time.Time
	for rest := []byte(read("ca-crl.pem")); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		require.NoError(t, err)
		if next.IsZero() || crl.NextUpdate.Before(next) {
			next = crl.NextUpdate
		}
	}
	require.WithinDuration(t, start.Add(24*time.Hour), next, 5*time.Second)
	require.Equal(t, "warning: ca-crl.pem expires at "+next.UTC().Format(time.RFC3339)+" (its earliest nextUpdate); Istio then fails every TLS handshake. "+
		"Refresh the cacerts Secret made from "+out+" before then, or let 'meshca serve' publish it (trustBundle.publishCACerts: true), which keeps ca-crl.pem current\n", stderr)
}

func TestSign_PrintsIstioOrderChainThatOpenSSLVerifies(t *testing.T) {
	dir := initCA(t)
	tmp := t.TempDir()
	out := meshca(t, "sign", "--dir", dir, "--csr", writeCSR(t, tmp, workloadID), "--identity", workloadID, "--ttl", "1h")
	certs := splitPEM(t, out)
	require.Len(t, certs, 3)
	require.Equal(t, time.Hour+2*time.Minute, certs[0].NotAfter.Sub(certs[0].NotBefore))
	leafPath := filepath.Join(tmp, "leaf.pem")
	require.NoError(t, os.WriteFile(leafPath, []byte(out), 0o644)) // openssl reads the first block
	o, err := exec.Command("openssl", "verify", "-x509_strict", "-CAfile", filepath.Join(dir, "root-cert.pem"),
		"-untrusted", leafPath, leafPath).CombinedOutput()
	require.NoError(t, err, string(o))
	require.Equal(t, leafPath+": OK\n", string(o))
}

func TestSign_RefusesForeignIdentityAndRecordsNothing(t *testing.T) {
	dir := initCA(t)
	cmd := exec.Command(meshcaBin, "sign", "--dir", dir, "--csr", writeCSR(t, t.TempDir(), workloadID),
		"--identity", "spiffe://cluster.local/ns/other/sa/app")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "do not equal the authenticated identity")
	list := meshca(t, "records", "list", "--dir", dir, "--json")
	require.Empty(t, strings.TrimSpace(list))
}

func TestInit_RefusesToOverwriteWithoutForce(t *testing.T) {
	dir := initCA(t)
	before, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	out, err := exec.Command(meshcaBin, "init", "--dir", dir).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "refusing to overwrite")
	after, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	require.Equal(t, before, after)
	meshca(t, "init", "--dir", dir, "--force")
	after, err = os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	require.NotEqual(t, before, after)
}

// TestInit_ForceRefusesWhileServeRuns: init --force would unlink the
// store and keys a running serve has open (its records from then on lost
// at its next stop); it refuses and changes nothing, and serve goes on.
func TestInit_ForceRefusesWhileServeRuns(t *testing.T) {
	dir := initCA(t)
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	// The files are the same ones (serve may write to its store
	// meanwhile), and the root's bytes are unchanged.
	before := map[string]os.FileInfo{}
	for _, n := range []string{"root-cert.pem", "root-key.pem", "meshca.db", "keys"} {
		fi, err := os.Stat(filepath.Join(dir, n))
		require.NoError(t, err)
		before[n] = fi
	}
	root, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	// Without --force it says why, not "use --force" (which is refused).
	out, err := exec.Command(meshcaBin, "init", "--dir", dir).CombinedOutput()
	require.Error(t, err, string(out))
	require.Equal(t, "Error: store "+filepath.Join(dir, "meshca.db")+" is held by another meshca process (meshca serve?); refusing to replace a running CA: stop it first", errorLine(t, string(out)))
	out, err = exec.Command(meshcaBin, "init", "--dir", dir, "--force").CombinedOutput()
	require.Error(t, err, string(out))
	require.Contains(t, string(out), "store "+filepath.Join(dir, "meshca.db")+" is held by another meshca process (meshca serve?); refusing to replace a running CA: stop it first")
	for n, fi := range before {
		after, err := os.Stat(filepath.Join(dir, n))
		require.NoError(t, err, n)
		require.True(t, os.SameFile(fi, after), "%s was replaced", n)
	}
	after, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	require.Equal(t, root, after)
	// serve still signs with its store.
	require.Contains(t, meshca(t, "records", "list", "--dir", dir), "dns:meshca.istio-system.svc")
	stopServe(t, s)
	meshca(t, "init", "--dir", dir, "--force")
}

// TestInit_ForceRefusesWhileServeRunsOnPostgres: a store on PostgreSQL
// is held by no process, but the serve answering on the directory's admin
// socket still has its keys in the directory open: init --force refuses.
func TestInit_ForceRefusesWhileServeRunsOnPostgres(t *testing.T) {
	pg, err := pgenv.Start()
	require.NoError(t, err)
	t.Cleanup(pg.Stop)
	dir := initCA(t)
	usePostgres(t, pg, dir, pg.CreateDatabase(t))
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	keys, err := os.Stat(filepath.Join(dir, "keys"))
	require.NoError(t, err)
	out, err := exec.Command(meshcaBin, "init", "--dir", dir, "--force").CombinedOutput()
	require.Error(t, err, string(out))
	require.Contains(t, string(out), "a meshca serve answers on its admin socket "+filepath.Join(dir, "admin.sock")+"; refusing to replace a running CA: stop it first")
	after, err := os.Stat(filepath.Join(dir, "keys"))
	require.NoError(t, err)
	require.True(t, os.SameFile(keys, after), "the keys directory was replaced")
	stopServe(t, s)
}

func TestServe_RefusesWorldReadableKey(t *testing.T) {
	dir := initCA(t)
	key := filepath.Join(dir, "root-key.pem")
	require.NoError(t, os.Chmod(key, 0o644))
	out, err := exec.Command(meshcaBin, "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "chmod 600 "+key)
	require.NotContains(t, string(out), "PRIVATE KEY")
}

func TestServe_InvalidConfigNamesTheKey(t *testing.T) {
	dir := initCA(t)
	cfg := filepath.Join(t.TempDir(), "meshca.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("trustDomain: cluster.local\nissuance:\n  maxCertTTL: 1h\n  defaultCertTTL: 24h\nroot:\n  file:\n    rootCert: "+dir+"/root-cert.pem\n    rootKey: "+dir+"/root-key.pem\nkeyStore:\n  dir: "+dir+"/keys\nstore:\n  path: "+dir+"/meshca.db\n"), 0o644))
	out, err := exec.Command(meshcaBin, "serve", "--config", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "issuance.maxCertTTL: 1h0m0s is below defaultCertTTL 24h0m0s")
}

func TestHelp_EveryCommandExplainsItselfWithExamples(t *testing.T) {
	for _, c := range [][]string{{}, {"init"}, {"serve"}, {"sign"}, {"inspect"}, {"cacerts"}, {"records", "list"}} {
		out := meshca(t, append(c, "--help")...)
		require.Contains(t, out, "Usage:", c)
		require.Contains(t, out, "Examples:", c)
	}
}

func TestServe_IstioEndpointAcceptsClientCertificateFromMeshcaSign(t *testing.T) {
	dir := initCA(t)
	tmp := t.TempDir()
	// An operator issues a client certificate offline...
	csrPath, keyPEM := writeCSRWithKey(t, tmp, workloadID)
	chainPEM := meshca(t, "sign", "--dir", dir, "--csr", csrPath, "--identity", workloadID)
	// ...and points an IstioCertificateService client at the running service.
	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	chain := callIstioCA(t, s.grpc, "localhost", rootPEM, []byte(chainPEM), keyPEM, workloadID)
	require.Len(t, chain, 3)
	require.Equal(t, string(rootPEM), chain[2])
}

// TestCACerts_WhileServeRunsMatchesOfflineExport: with meshca serve
// running on the directory, meshca cacerts asks it (admin socket) for the
// public files and reads the key file itself; the folder is the one the
// offline export writes once serve has stopped, byte for byte (ca-crl.pem
// aside: the offline export rebuilds meshca's CRL with a new CRLNumber).
func TestCACerts_WhileServeRunsMatchesOfflineExport(t *testing.T) {
	dir := initCA(t)
	tmp := t.TempDir()
	leaf := signLeaf(t, dir, workloadID)
	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	meshca(t, "revoke", "--dir", dir, "--serial", serialOf(leaf[0]), "--reason", "keyCompromise")
	waitFor(t, 5*time.Second, "the revoked leaf on the CRL", func() bool { return len(crlSerials(t, dir)) == 1 })

	export := func(name string, args ...string) (string, string, string) {
		out := filepath.Join(tmp, name)
		stdout, stderr := meshcaStderr(t, append([]string{"cacerts", "--dir", dir, "--out", out}, args...)...)
		return out, stdout, stderr
	}
	live, stdout, stderr := export("live")
	require.Equal(t, "Wrote Istio cacerts for generation 1 to "+live+": [ca-cert.pem ca-key.pem cert-chain.pem root-cert.pem]\n", stdout)
	require.Empty(t, stderr)
	liveCRL, stdout, stderr := export("live-crl", "--crl")
	require.Equal(t, "Wrote Istio cacerts for generation 1 to "+liveCRL+": [ca-cert.pem ca-crl.pem ca-key.pem cert-chain.pem root-cert.pem]\n", stdout)
	require.Equal(t, crlAdvice(t, liveCRL), stderr)
	for _, out := range []string{live, liveCRL} {
		for _, n := range dirNames(t, out) {
			fi, err := os.Stat(filepath.Join(out, n))
			require.NoError(t, err)
			want := os.FileMode(0o644)
			if n == "ca-key.pem" {
				want = 0o600
			}
			require.Equal(t, want, fi.Mode().Perm(), n)
		}
	}

	// openssl: cert-chain.pem verifies against root-cert.pem, the key
	// matches ca-cert.pem, and ca-crl.pem holds a CRL for every CA of the
	// chain that lists the revoked leaf.
	o, err := exec.Command("openssl", "verify", "-x509_strict", "-CAfile", filepath.Join(live, "root-cert.pem"),
		filepath.Join(live, "cert-chain.pem")).CombinedOutput()
	require.NoError(t, err, string(o))
	require.Equal(t, filepath.Join(live, "cert-chain.pem")+": OK\n", string(o))
	certPub, err := exec.Command("openssl", "x509", "-in", filepath.Join(live, "ca-cert.pem"), "-noout", "-pubkey").Output()
	require.NoError(t, err)
	keyPub, err := exec.Command("openssl", "pkey", "-in", filepath.Join(live, "ca-key.pem"), "-pubout").Output()
	require.NoError(t, err)
	require.Equal(t, string(certPub), string(keyPub), "ca-key.pem must match ca-cert.pem")
	caCRL, err := os.ReadFile(filepath.Join(liveCRL, "ca-crl.pem"))
	require.NoError(t, err)
	requireVerdicts(t, "live ca-crl.pem", caCRL, leaf[2], map[string]verdict{
		"revoked leaf": {chain: leaf, accept: false},
		"good leaf":    {chain: signLeaf(t, dir, workloadID), accept: true},
	})

	// The route itself carries the public files and the key's file name,
	// never key bytes.
	resp, err := adminClient(filepath.Join(dir, "admin.sock")).Get("http://meshca/v1/cacerts?crl=1")
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode, string(raw))
	require.NotContains(t, string(raw), "PRIVATE KEY")
	var route struct {
		Generation uint64
		KeyRef     string
		Files      map[string]string
	}
	require.NoError(t, json.Unmarshal(raw, &route))
	require.Equal(t, uint64(1), route.Generation)
	require.Equal(t, filepath.Join(dir, "keys"), filepath.Dir(route.KeyRef))
	require.Len(t, route.Files, 4)
	for n, b := range route.Files {
		f, err := os.ReadFile(filepath.Join(liveCRL, n))
		require.NoError(t, err)
		require.Equal(t, string(f), b, n)
	}

	stopServe(t, s)
	off, _, _ := export("offline")
	offCRL, _, _ := export("offline-crl", "--crl")
	for _, pair := range [][2]string{{live, off}, {liveCRL, offCRL}} {
		require.Equal(t, dirNames(t, pair[1]), dirNames(t, pair[0]))
		for _, n := range dirNames(t, pair[1]) {
			a, err := os.ReadFile(filepath.Join(pair[0], n))
			require.NoError(t, err)
			b, err := os.ReadFile(filepath.Join(pair[1], n))
			require.NoError(t, err)
			if n != "ca-crl.pem" {
				require.Equal(t, string(b), string(a), n)
				continue
			}
			la, lb := parseCRLs(t, a), parseCRLs(t, b)
			require.Len(t, la, 2)
			require.Len(t, lb, 2)
			for i := range lb {
				require.Equal(t, lb[i].RawIssuer, la[i].RawIssuer)
				require.Equal(t, crlEntrySerials(lb[i]), crlEntrySerials(la[i]))
			}
			require.Equal(t, []string{serialOf(leaf[0])}, crlEntrySerials(la[0]))
		}
	}
}

// crlAdvice is the stderr advice of cacerts --crl for the folder out.
func crlAdvice(t *testing.T, out string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "ca-crl.pem"))
	require.NoError(t, err)
	var next time.Time
	for _, l := range parseCRLs(t, b) {
		if next.IsZero() || l.NextUpdate.Before(next) {
			next = l.NextUpdate
		}
	}
	return "warning: ca-crl.pem expires at " + next.UTC().Format(time.RFC3339) + " (its earliest nextUpdate); Istio then fails every TLS handshake. " +
		"Refresh the cacerts Secret made from " + out + " before then, or let 'meshca serve' publish it (trustBundle.publishCACerts: true), which keeps ca-crl.pem current\n"
}

func parseCRLs(t *testing.T, b []byte) []*x509.RevocationList {
	t.Helper()
	var out []*x509.RevocationList
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return out
		}
		l, err := x509.ParseRevocationList(blk.Bytes)
		require.NoError(t, err)
		out = append(out, l)
	}
}

func crlEntrySerials(l *x509.RevocationList) []string {
	s := []string{}
	for _, e := range l.RevokedCertificateEntries {
		s = append(s, hex.EncodeToString(e.SerialNumber.Bytes()))
	}
	return s
}

// TestCACerts_WhileServeRunsOnARelativeDir: serve started with a relative
// --dir records relative key files; it names them to the CLI as absolute
// paths, so that a CLI pointed at the same directory another way finds
// the key.
func TestCACerts_WhileServeRunsOnARelativeDir(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	meshca(t, "init", "--dir", "ca")
	s := startServe(t, "ca")
	s.waitReady(t, 5*time.Second)
	live := filepath.Join(t.TempDir(), "live")
	stdout, stderr := meshcaStderr(t, "cacerts", "--dir", filepath.Join(base, "ca"), "--out", live)
	require.Equal(t, "Wrote Istio cacerts for generation 1 to "+live+": [ca-cert.pem ca-key.pem cert-chain.pem root-cert.pem]\n", stdout)
	require.Empty(t, stderr)
	stopServe(t, s)
	off := filepath.Join(t.TempDir(), "offline")
	meshca(t, "cacerts", "--dir", "ca", "--out", off)
	for _, n := range dirNames(t, off) {
		a, err := os.ReadFile(filepath.Join(live, n))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(off, n))
		require.NoError(t, err)
		require.Equal(t, string(b), string(a), n)
	}
}
