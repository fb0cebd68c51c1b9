package authority_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

var (
	oidAltKey = asn1.ObjectIdentifier{2, 5, 29, 72}
	oidAltAlg = asn1.ObjectIdentifier{2, 5, 29, 73}
	oidAltSig = asn1.ObjectIdentifier{2, 5, 29, 74}
	oidMLDSA  = map[string]asn1.ObjectIdentifier{
		"ML-DSA-44": {2, 16, 840, 1, 101, 3, 4, 3, 17},
		"ML-DSA-65": {2, 16, 840, 1, 101, 3, 4, 3, 18},
		"ML-DSA-87": {2, 16, 840, 1, 101, 3, 4, 3, 19},
	}
)

// profileConfig returns a --dir configuration for a CA of profile p with
// its defaults filled in, after mutate.
func profileConfig(t testing.TB, dir string, p profile.Name, mutate ...func(*config.Config)) *config.Config {
	t.Helper()
	cfg := config.Defaults(dir)
	cfg.Intermediate.Profile, cfg.Intermediate.PQAlgorithm, cfg.Issuance.Profile = p, "", ""
	for _, m := range mutate {
		m(cfg)
	}
	cfg.Init()
	require.NoError(t, cfg.Validate())
	return cfg
}

// newProfileCA is a CA of profile p whose root meshca created for that
// profile (a Catalyst root carries its own ML-DSA key), opened as serve
// opens it.
func newProfileCA(t testing.TB, p profile.Name, mutate ...func(*config.Config)) *testCA {
	t.Helper()
	dir := t.TempDir()
	cfg := profileConfig(t, dir, p, mutate...)
	_, err := authority.CreateRoot(context.Background(), cfg, authority.RootRequest{
		CommonName: "test root", Organization: "meshca-test", Lifetime: 10 * 365 * 24 * time.Hour, KeyAlgorithm: keys.ECP256,
	})
	require.NoError(t, err)
	return openCA(t, dir, cfg)
}

func openCA(t testing.TB, dir string, cfg *config.Config) *testCA {
	t.Helper()
	var buf bytes.Buffer
	rt, err := openServeCA(context.Background(), cfg, slog.New(slog.NewJSONHandler(&buf, nil)), nil)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	return &testCA{dir: dir, cfg: cfg, rt: rt, audit: &buf}
}

// issued is a signed workload chain, parsed.
type issued struct {
	res                *authority.Result
	leaf, inter, rootC *x509.Certificate
}

func (ca *testCA) sign(t *testing.T, leafProfile profile.Name) issued {
	t.Helper()
	res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
		CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload), Requester: "test", Profile: leafProfile,
	})
	require.NoError(t, err)
	require.Len(t, res.Chain, 3)
	parse := func(s string) *x509.Certificate {
		certs, err := root.ParseCertificates([]byte(s))
		require.NoError(t, err)
		require.Len(t, certs, 1)
		return certs[0]
	}
	return issued{res: res, leaf: parse(res.Chain[0]), inter: parse(res.Chain[1]), rootC: parse(res.Chain[2])}
}

// pqExtensions returns c's 2.5.29.72/.73/.74 extensions, in order.
func pqExtensions(c *x509.Certificate) []pkix.Extension {
	var out []pkix.Extension
	for _, e := range c.Extensions {
		if e.Id.Equal(oidAltKey) || e.Id.Equal(oidAltAlg) || e.Id.Equal(oidAltSig) {
			out = append(out, e)
		}
	}
	return out
}

func extIDs(exts []pkix.Extension) []string {
	ids := []string{}
	for _, e := range exts {
		ids = append(ids, e.Id.String())
	}
	return ids
}

// requireGoVerifies runs crypto/x509 path validation of c up to rootC.
func requireGoVerifies(t *testing.T, c, rootC *x509.Certificate, inters ...*x509.Certificate) {
	t.Helper()
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	rp.AddCert(rootC)
	for _, i := range inters {
		ip.AddCert(i)
	}
	chains, err := c.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err)
	require.Len(t, chains[0], 2+len(inters)-boolInt(c.Equal(rootC)))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// requireOpenSSLStrict runs `openssl verify -x509_strict` on c.
func requireOpenSSLStrict(t *testing.T, c, rootC *x509.Certificate, inters ...*x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"verify", "-x509_strict", "-CAfile", writeFile(t, dir, "root.pem", root.EncodePEM(rootC))}
	if len(inters) > 0 {
		args = append(args, "-untrusted", writeFile(t, dir, "inter.pem", root.EncodePEM(inters...)))
	}
	target := writeFile(t, dir, "cert.pem", root.EncodePEM(c))
	out, err := exec.Command("openssl", append(args, target)...).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, target+": OK\n", string(out))
}

// flipSignatureByte returns a copy of der with one byte of its signature
// value (at offset from the signature's start) flipped.
func flipSignatureByte(t *testing.T, c *x509.Certificate, offset int) *x509.Certificate {
	t.Helper()
	der := bytes.Clone(c.Raw)
	sigStart := len(der) - len(c.Signature)
	require.Equal(t, c.Signature, der[sigStart:])
	der[sigStart+offset] ^= 0x01
	out, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return out
}

func anchorOf(t *testing.T, c *x509.Certificate) pqc.TrustAnchor {
	t.Helper()
	a, err := pqc.AnchorFromCertificate(c)
	require.NoError(t, err)
	return a
}

func pqAnchorFile(ca *testCA) string {
	return filepath.Join(filepath.Dir(ca.cfg.Store.Path), config.PQAnchorFile)
}

func openCAErr(t *testing.T, cfg *config.Config) (*authority.Runtime, error) {
	t.Helper()
	rt, err := openServeCA(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
	if rt != nil {
		t.Cleanup(func() { rt.Close() })
	}
	return rt, err
}
