package rootrotation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// B must outlive the rotation: its longest waits (phase 2's maximum and
// phase 4's) and then an intermediate's lifetime under it. The harness's
// waits are 12h10m and 48h, its intermediates live 30 days.
func TestStart_RefusesARootThatExpiresBeforeTheRotationEnds(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	need := 12*time.Hour + 10*time.Minute + 48*time.Hour + 30*24*time.Hour
	for name, lifetime := range map[string]time.Duration{
		"in minutes":             5 * time.Minute,
		"before the waits end":   60 * time.Hour,
		"a minute short of need": need + time.Minute - time.Minute,
	} {
		t.Run(name, func(t *testing.T) {
			short := newFileRoot(t, "root short", t0.Add(-time.Minute), lifetime)
			_, err := h.c.Start(ctx, StartRequest{NewRoot: short.spec, By: "test"})
			require.Error(t, err)
			require.Equal(t, caerr.InvalidArgument, caerr.CodeOf(err), "%v", err)
			require.ErrorContains(t, err, "expires "+short.cert.NotAfter.UTC().Format(time.RFC3339))
			require.ErrorContains(t, err, "before the rotation and an intermediate under it end")
			_, err = h.st.GetRootRotation(ctx)
			require.ErrorIs(t, err, store.ErrNotFound, "nothing journaled")
		})
	}
	// A root that lives a minute longer than that is accepted.
	long := newFileRoot(t, "root long", t0.Add(-time.Minute), need+2*time.Minute)
	_, err := h.c.Start(ctx, StartRequest{NewRoot: long.spec, By: "test"})
	require.NoError(t, err)
	require.Equal(t, long.cert.Raw, h.journal().NewRootDER)
}

// B mints a throwaway intermediate before anything is journaled: a root
// with pathLenConstraint 0 (RFC 5280 section 4.2.1.9: it may issue no CA
// certificate) is refused at Start, not published in phase 1 to fail at
// the switch. The throwaway's key reaches neither the key store nor the
// store.
func TestStart_RefusesARootThatCannotIssueAnIntermediate(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "root pathlen0"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	dir := t.TempDir()
	cp, kp := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	require.NoError(t, os.WriteFile(cp, root.EncodePEM(c), 0o644))
	require.NoError(t, keys.WriteKeyFile(kp, k))
	gensBefore, err := h.st.ListGenerations(ctx)
	require.NoError(t, err)

	_, err = h.c.Start(ctx, StartRequest{NewRoot: config.RootConfig{Source: "file", File: config.FileRootConfig{RootCert: cp, RootKey: kp}}, By: "t"})
	require.Error(t, err)
	require.Equal(t, caerr.InvalidArgument, caerr.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, "the new root (file "+cp+") cannot issue meshca's intermediate: under the throwaway intermediate: the throwaway leaf does not verify to the roots: x509: too many intermediates for path length constraint")
	_, err = h.st.GetRootRotation(ctx)
	require.ErrorIs(t, err, store.ErrNotFound, "nothing journaled")
	require.Equal(t, 0, h.mgr.refreshes, "nothing published")
	gens, err := h.st.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, gensBefore, gens, "no generation recorded")

	// A good root passes the same trial, which leaves no key behind.
	keyDir, err := os.ReadDir(h.keyDir)
	require.NoError(t, err)
	h.start()
	after, err := os.ReadDir(h.keyDir)
	require.NoError(t, err)
	require.Equal(t, keyDir, after, "the throwaway key never reaches the key store")
	gens, err = h.st.ListGenerations(ctx)
	require.NoError(t, err)
	require.Equal(t, gensBefore, gens, "the throwaway intermediate is not recorded")
}
