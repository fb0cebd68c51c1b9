package crl_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

func opensslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	require.NoError(t, err, "openssl is needed (make test installs it)")
	return p
}

// opensslVerify runs openssl verify on leaf with the given CRL file and
// returns its combined output and whether it accepted.
// It verifies at the manager's (fake) time: a rebuild's thisUpdate may be
// a second ahead of the real clock there.
func opensslVerify(t *testing.T, e *mgrEnv, dir string, rootCert, inter, leaf *x509.Certificate, crlFile string, flag string) (string, bool) {
	t.Helper()
	rootF := writeFile(t, dir, "root.pem", root.EncodePEM(rootCert))
	interF := writeFile(t, dir, "inter.pem", root.EncodePEM(inter))
	leafF := writeFile(t, dir, "leaf.pem", root.EncodePEM(leaf))
	out, err := exec.Command(opensslPath(t), "verify", flag, "-attime", strconv.FormatInt(e.clk.Now().Unix(), 10), "-CAfile", rootF, "-untrusted", interF, "-CRLfile", crlFile, leafF).CombinedOutput()
	return string(out), err == nil
}

// rebuildNow revokes through the running manager and waits for the new
// ca-crl.pem.
func (e *mgrEnv) revokeAndWait(t *testing.T, req crl.Request) {
	t.Helper()
	n := e.pub.count()
	_, err := e.m.Revoke(context.Background(), req)
	require.NoError(t, err)
	// Step the clock until the rebuild is published: past the coalescing
	// window and into the next second (a rebuild waits for a new
	// thisUpdate). One step is not enough under load: the manager's loop
	// may set its coalescing timer after the step.
	require.Eventually(t, func() bool {
		if e.pub.count() > n {
			// Served as ca-crl.pem just after the hand-over returns.
			return bytes.Equal(e.m.CACRLPEM(), e.pub.last())
		}
		e.clk.Step(time.Second)
		return false
	}, 10*time.Second, 10*time.Millisecond)
}

// openssl, an independent verifier, accepts a good leaf and rejects a
// revoked one with exactly the ca-crl.pem meshca publishes, checking the
// CRL of every CA in the chain (-crl_check_all: this proves ca-crl.pem
// holds one for each, as Istio requires); and it rejects the leaves of a
// revoked generation through the root CRL.
func TestOpenSSL_VerifyWithThePublishedCaCRL(t *testing.T) {
	p := newMgrPKI(t)
	good, _ := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	bad, badRec := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	oldGood, _ := p.issue(t, p.retired(), appID, p.clk.Now().Add(time.Hour))
	e := newManager(t, p)
	e.run(t)
	dir := t.TempDir()
	caCRL := func() string { return writeFile(t, dir, "ca-crl.pem", e.pub.last()) }
	active, retired := p.gens[p.active].cert, p.gens[p.retired()].cert

	out, ok := opensslVerify(t, e, dir, p.root, active, bad, caCRL(), "-crl_check_all")
	require.True(t, ok, "before the revocation: %s", out)

	e.revokeAndWait(t, crl.Request{Serial: badRec.Serial, Reason: store.ReasonKeyCompromise})
	out, ok = opensslVerify(t, e, dir, p.root, active, bad, caCRL(), "-crl_check_all")
	require.False(t, ok, out)
	require.Contains(t, out, "certificate revoked")
	out, ok = opensslVerify(t, e, dir, p.root, active, good, caCRL(), "-crl_check_all")
	require.True(t, ok, out)
	// -crl_check (the leaf's CRL only) with the generation's CRL alone.
	genCRL, _ := e.crl(t, crl.ScopeGeneration(p.active), false)
	out, ok = opensslVerify(t, e, dir, p.root, active, bad, writeFile(t, dir, "gen.pem", pemOf("X509 CRL", genCRL.DER)), "-crl_check")
	require.False(t, ok, out)
	require.Contains(t, out, "certificate revoked")

	out, ok = opensslVerify(t, e, dir, p.root, retired, oldGood, caCRL(), "-crl_check_all")
	require.True(t, ok, "a leaf of the retired generation before it is revoked: %s", out)
	e.revokeAndWait(t, crl.Request{Generation: p.retired(), Reason: store.ReasonCACompromise})
	out, ok = opensslVerify(t, e, dir, p.root, retired, oldGood, caCRL(), "-crl_check_all")
	require.False(t, ok, out)
	require.Contains(t, out, "certificate revoked")
	out, ok = opensslVerify(t, e, dir, p.root, active, good, caCRL(), "-crl_check_all")
	require.True(t, ok, "the active generation is untouched: %s", out)
}

// openssl crl -noout -text parses every CRL meshca serves, full and delta,
// and ca-crl.pem, and shows the extensions meshca sets.
func TestOpenSSL_ParsesEveryCRL(t *testing.T) {
	p := newMgrPKI(t)
	_, is := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	e := newManager(t, p)
	e.run(t)
	e.revokeAndWait(t, crl.Request{Serial: is.Serial, Reason: store.ReasonSuperseded, InvalidityDate: p.clk.Now().Add(-time.Hour)})
	dir := t.TempDir()
	crls := e.m.CRLs()
	require.Len(t, crls, 6)
	for _, c := range crls {
		name := c.Scope
		if c.Delta {
			name += "-delta"
		}
		f := writeFile(t, dir, name+".crl", c.DER)
		out, err := exec.Command(opensslPath(t), "crl", "-inform", "DER", "-noout", "-text", "-in", f).CombinedOutput()
		require.NoError(t, err, "%s: %s", name, out)
		text := string(out)
		require.Contains(t, text, "X509v3 Authority Key Identifier", name)
		require.Contains(t, text, "X509v3 CRL Number", name)
		if c.Delta {
			require.Contains(t, text, "X509v3 Delta CRL Indicator", name)
		} else {
			require.Contains(t, text, "X509v3 Freshest CRL", name)
			require.Contains(t, text, "URI:http://meshca.test:15014/crl/"+c.Scope+"-delta.crl", name)
		}
		if c.Scope == crl.ScopeGeneration(p.active) {
			require.Contains(t, text, "Superseded", name)
			require.Contains(t, text, "Invalidity Date", name)
			require.Contains(t, strings.ToUpper(text), strings.ToUpper(is.Serial), name)
		}
	}
	out, err := exec.Command(opensslPath(t), "crl", "-noout", "-text", "-in", writeFile(t, dir, "ca-crl.pem", e.m.CACRLPEM())).CombinedOutput()
	require.NoError(t, err, "%s", out)
}
