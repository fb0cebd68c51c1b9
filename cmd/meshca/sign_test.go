package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
)

// runMeshca runs the meshca command tree in-process and returns its stdout.
func runMeshca(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func writeWorkloadCSR(t *testing.T, dir string, u *url.URL) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	require.NoError(t, err)
	p := filepath.Join(dir, "app.csr")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600))
	return p
}

// TestSign_IdentityFollowsTheSPIFFESpec: --identity is parsed as a SPIFFE ID
// (SPIFFE-ID §2) of the CA's trust domain before the CA is opened; a
// scheme in upper case (which a URL parser would silently lower-case) is
// refused, and nothing is signed.
func TestSign_IdentityFollowsTheSPIFFESpec(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
	require.NoError(t, err)
	good := &url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/app"}
	csr := writeWorkloadCSR(t, t.TempDir(), good)

	out, err := runMeshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", good.String())
	require.NoError(t, err)
	require.Contains(t, out, "-----BEGIN CERTIFICATE-----")

	for name, tc := range map[string]struct{ id, msg string }{
		"upper-case scheme":    {"SPIFFE://cluster.local/ns/default/sa/app", `--identity: "SPIFFE://cluster.local/ns/default/sa/app" is not a SPIFFE ID: scheme is missing or invalid`},
		"foreign trust domain": {"spiffe://other.local/ns/default/sa/app", `--identity: SPIFFE ID "spiffe://other.local/ns/default/sa/app" is not in trust domain cluster.local`},
		"no path":              {"spiffe://cluster.local", `--identity: SPIFFE ID "spiffe://cluster.local" has no path`},
		"query":                {"spiffe://cluster.local/ns/default/sa/app?x", `--identity: "spiffe://cluster.local/ns/default/sa/app?x" is not a SPIFFE ID`},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runMeshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", tc.id)
			require.Error(t, err, "%s must be refused", tc.id)
			require.ErrorContains(t, err, tc.msg)
			require.Empty(t, out, "nothing is signed")
		})
	}
}

// TestSign_NegativeTTLIsRefused: a negative --ttl is a typing error, not
// "the default" (as Istio's validity_duration of 0 or less is). Before, a
// 24h certificate was signed. Zero still means the default.
func TestSign_NegativeTTLIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
	require.NoError(t, err)
	id := &url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/app"}
	csr := writeWorkloadCSR(t, t.TempDir(), id)

	out, err := runMeshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", id.String(), "--ttl", "-5h")
	require.EqualError(t, err, "--ttl: -5h0m0s is negative: give the certificate's lifetime (e.g. 12h), or leave it out for issuance.defaultCertTTL")
	require.Empty(t, out, "nothing is signed")
	list, err := runMeshca(t, "records", "list", "--dir", dir, "-o", "json")
	require.NoError(t, err)
	require.Empty(t, list, "nothing is recorded")

	out, err = runMeshca(t, "sign", "--dir", dir, "--csr", csr, "--identity", id.String(), "--ttl", "0s")
	require.NoError(t, err)
	certs, err := root.ParseCertificates([]byte(out))
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour+2*time.Minute, certs[0].NotAfter.Sub(certs[0].NotBefore), "the default 24h, notBefore backdated 2 minutes")
}

// signedOffline inits a classical CA and signs a workload certificate with
// the offline 'meshca sign': the CA's directory, the leaf and its identity.
func signedOffline(t *testing.T) (string, *x509.Certificate, *url.URL) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
	require.NoError(t, err)
	id := &url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/app"}
	out, err := runMeshca(t, "sign", "--dir", dir, "--csr", writeWorkloadCSR(t, t.TempDir(), id), "--identity", id.String())
	require.NoError(t, err)
	certs, err := root.ParseCertificates([]byte(out))
	require.NoError(t, err)
	return dir, certs[0], id
}

// TestRecordsShow_TakesTheSerialAsOpensslPrintsIt: records show takes the
// serial as revoke does (upper case, colons: openssl's form); bad input
// says how to give it. Before, "01:A2:..." was "not found".
func TestRecordsShow_TakesTheSerialAsOpensslPrintsIt(t *testing.T) {
	dir, leaf, _ := signedOffline(t)
	serial := leaf.SerialNumber.Bytes()
	var colons []string
	for _, b := range serial {
		colons = append(colons, fmt.Sprintf("%02X", b))
	}
	rec, err := runMeshca(t, "records", "show", strings.Join(colons, ":"), "--dir", dir)
	require.NoError(t, err)
	require.Contains(t, rec, fmt.Sprintf(`"serial": "%x"`, serial))

	_, err = runMeshca(t, "records", "show", "zz", "--dir", dir)
	require.EqualError(t, err, `serial "zz" is not hexadecimal; give it as 'openssl x509 -noout -serial' prints it, e.g. 4fa3c1 or 4F:A3:C1`)
}

// TestRecordsGet_TakesOutput: records get takes -o as the other reading
// commands do (before: "unknown shorthand flag: 'o'"): json, its default
// output, and table, the record's fields one per line.
func TestRecordsGet_TakesOutput(t *testing.T) {
	dir, leaf, id := signedOffline(t)
	serial := fmt.Sprintf("%x", leaf.SerialNumber.Bytes())

	def, err := runMeshca(t, "records", "get", serial, "--dir", dir)
	require.NoError(t, err)
	asJSON, err := runMeshca(t, "records", "get", serial, "--dir", dir, "-o", "json")
	require.NoError(t, err)
	require.Equal(t, def, asJSON)

	table, err := runMeshca(t, "records", "get", serial, "--dir", dir, "-o", "table")
	require.NoError(t, err)
	sum := sha256.Sum256(leaf.Raw)
	require.Contains(t, table, "Serial:      "+serial+"\n")
	require.Contains(t, table, "Identity:    "+id.String()+"\n")
	require.Contains(t, table, "Not after:   "+leaf.NotAfter.UTC().Format(time.RFC3339)+"\n")
	require.Contains(t, table, "Profile:     classical\n")
	require.Contains(t, table, "SHA-256:     "+hex.EncodeToString(sum[:])+"\n")

	_, err = runMeshca(t, "records", "get", serial, "--dir", dir, "-o", "yaml")
	require.EqualError(t, err, `--output "yaml": use json or table`)
}
