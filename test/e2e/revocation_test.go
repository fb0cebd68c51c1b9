package e2e

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crypto/x509"

	"github.com/stretchr/testify/require"
)

// status is the part of 'meshca status -o json' the tests read.
type caStatus struct {
	Generation        uint64 `json:"generation"`
	LastRevocationSeq uint64 `json:"lastRevocationSeq"`
	Store             struct {
		Healthy bool `json:"healthy"`
	} `json:"store"`
	CRLs []struct {
		Scope  string `json:"scope"`
		Delta  bool   `json:"delta"`
		Number uint64 `json:"number"`
	} `json:"crls"`
}

func meshcaStatus(t *testing.T, dir string) caStatus {
	t.Helper()
	var st caStatus
	require.NoError(t, json.Unmarshal([]byte(meshca(t, "status", "--dir", dir, "-o", "json")), &st))
	return st
}

// signedSerial signs a workload certificate through the CLI and returns its
// serial as the store writes it.
func signedSerial(t *testing.T, dir string) string {
	t.Helper()
	csr := writeCSR(t, t.TempDir(), workloadID)
	certs := splitPEM(t, meshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", workloadID, "--ttl", "1h"))
	return hex.EncodeToString(certs[0].SerialNumber.Bytes())
}

// crlSerials fetches a CRL with the CLI and returns its revoked serials;
// openssl parses it too.
func crlSerials(t *testing.T, dir string, args ...string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "x.crl")
	meshca(t, append([]string{"crl", "fetch", "--dir", dir, "--out", out}, args...)...)
	der, err := os.ReadFile(out)
	require.NoError(t, err)
	o, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", out, "-noout", "-text").CombinedOutput()
	require.NoError(t, err, string(o))
	rl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	var serials []string
	for _, e := range rl.RevokedCertificateEntries {
		serials = append(serials, hex.EncodeToString(e.SerialNumber.Bytes()))
	}
	return serials
}

// TestCLI_RevocationWhileServeRuns: revoke, revocations list, records list,
// status and crl fetch all work from a second process while serve holds
// the store; the revoked serial is on the served CRL; bad input stores
// nothing.
func TestCLI_RevocationWhileServeRuns(t *testing.T) {
	dir := initCA(t)
	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	serial := signedSerial(t, dir)

	before := meshcaStatus(t, dir)
	require.Equal(t, uint64(1), before.Generation)
	require.True(t, before.Store.Healthy)
	require.Zero(t, before.LastRevocationSeq)
	require.Empty(t, crlSerials(t, dir), "nothing revoked yet")

	// openssl's serial format (upper case, colons) is accepted.
	var colons []string
	for i := 0; i < len(serial); i += 2 {
		colons = append(colons, strings.ToUpper(serial[i:i+2]))
	}
	out := meshca(t, "revoke", "--dir", dir, "--serial", strings.Join(colons, ":"), "--reason", "keyCompromise")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	require.Equal(t, []string{"1", serial, "leaf", "1", workloadID, "keyCompromise"}, strings.Fields(lines[1])[:6])
	require.Equal(t, cliRequester(t), strings.Fields(lines[1])[7])

	// Bad input: a clear error, nothing stored.
	require.Equal(t, `Error: invalid revocation request: serial "zz" is not hexadecimal; give it as 'openssl x509 -noout -serial' prints it, e.g. 4fa3c1 or 4F:A3:C1`,
		errorLine(t, meshcaFails(t, "revoke", "--dir", dir, "--serial", "zz", "--reason", "1")))
	require.Contains(t, errorLine(t, meshcaFails(t, "revoke", "--dir", dir, "--serial", "0a", "--reason", "stolen")), `unknown revocation reason "stolen"`)

	listed := meshca(t, "revocations", "list", "--dir", dir, "-o", "json")
	require.Equal(t, 1, strings.Count(listed, "\n"), listed)
	require.Contains(t, listed, `"serial":"`+serial+`"`)
	require.Contains(t, listed, `"reason":1`)
	require.Contains(t, meshca(t, "records", "list", "--dir", dir), serial)

	// The CRL is rebuilt within moments of the revocation.
	require.Eventually(t, func() bool {
		got := crlSerials(t, dir)
		return len(got) == 1 && got[0] == serial
	}, 5*time.Second, 100*time.Millisecond)
	after := meshcaStatus(t, dir)
	require.Equal(t, uint64(1), after.LastRevocationSeq)
	require.NotEmpty(t, after.CRLs)
	require.Contains(t, meshca(t, "status", "--dir", dir), "gen-1")

	require.Contains(t, s.logs(), `"event":"certificate.revoked","serial":"`+serial+`"`)
	require.Contains(t, s.logs(), `"event":"admin.call","action":"revoke revocations","route":"POST /v1/revocations","requester":"`+cliRequester(t)+`","code":400`)

	// Revoking it again, with another reason, changes nothing: the
	// original record comes back, the CLI says so, and no second audit
	// line is written.
	again := exec.Command(meshcaBin, "revoke", "--dir", dir, "--serial", serial, "--reason", "affiliationChanged")
	var stdout, stderr strings.Builder
	again.Stdout, again.Stderr = &stdout, &stderr
	require.NoError(t, again.Run(), stderr.String())
	lines = strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.Len(t, lines, 2, stdout.String())
	require.Equal(t, []string{"1", serial, "leaf", "1", workloadID, "keyCompromise"}, strings.Fields(lines[1])[:6])
	rec := meshca(t, "revocations", "list", "--dir", dir, "-o", "json")
	var stored struct {
		RevokedAt time.Time `json:"revokedAt"`
	}
	require.NoError(t, json.Unmarshal([]byte(rec), &stored))
	require.Equal(t, "Serial "+serial+" was already revoked at "+stored.RevokedAt.UTC().Format(time.RFC3339)+" (reason keyCompromise, by "+cliRequester(t)+"); a revocation is final, so nothing changed.\n"+
		"The reason given now (affiliationChanged) is not recorded: the CRLs keep keyCompromise.\n", stderr.String())
	require.Equal(t, 1, strings.Count(s.logs(), `"event":"certificate.revoked"`), "one audit line per revoked certificate")
	require.Contains(t, s.logs(), `"event":"certificate.revocation_repeated","serial":"`+serial+`","kind":"leaf","generation":1,"identity":"`+workloadID+`","known":true,"reason":"keyCompromise"`)
	require.Contains(t, s.logs(), `"requested_reason":"affiliationChanged"`)
	// Scripts see it too.
	asJSON := meshca(t, "revoke", "--dir", dir, "--serial", serial, "--reason", "keyCompromise", "-o", "json")
	require.Contains(t, asJSON, `"serial":"`+serial+`"`)
	require.Contains(t, asJSON, `"alreadyRevoked":true`)
}

// TestCLI_RevokeWithoutServeGoesToTheStore: with no serve, revoke writes
// the store directly and says the CRLs follow at start; crl fetch says
// what to do; once serve starts, the CRL lists the serial.
func TestCLI_RevokeWithoutServeGoesToTheStore(t *testing.T) {
	dir := initCA(t)
	serial := signedSerial(t, dir)
	cmd := exec.Command(meshcaBin, "revoke", "--dir", dir, "--serial", serial, "--reason", "superseded")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	require.Contains(t, stdout.String(), serial)
	require.Contains(t, stderr.String(), "Recorded in the store; no meshca serve is running on it, so the CRLs will be rebuilt and published when meshca serve starts.")
	require.Contains(t, stderr.String(), `"event":"certificate.revoked"`)
	require.Contains(t, meshca(t, "revocations", "list", "--dir", dir), serial)
	require.Contains(t, meshca(t, "status", "--dir", dir), "not running (read from the store)")

	require.Equal(t, "Error: no meshca serve is running on the store "+filepath.Join(dir, "meshca.db")+": CRLs are built and served by meshca serve; start it (meshca serve --dir "+dir+") and run crl fetch again",
		errorLine(t, meshcaFails(t, "crl", "fetch", "--dir", dir, "--out", filepath.Join(t.TempDir(), "x.crl"))))

	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	require.Equal(t, []string{serial}, crlSerials(t, dir))
}
