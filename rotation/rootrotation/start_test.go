package rootrotation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
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

// Every bad new root is refused with InvalidArgument and a message that
// says what is wrong, and nothing is journaled or published.
func TestStart_BadNewRootChangesNothing(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	other := newFileRoot(t, "root C", t0, 365*24*time.Hour)
	expired := newFileRoot(t, "root old", t0.Add(-48*time.Hour), 24*time.Hour)
	notCA := leafFiles(t, h)
	missing := h.b.spec
	missing.File.RootKey = filepath.Join(t.TempDir(), "nope.pem")
	mismatch := h.b.spec
	mismatch.File.RootKey = other.spec.File.RootKey
	for name, tc := range map[string]struct {
		req  StartRequest
		code caerr.Code
		msg  string
	}{
		"no key":         {StartRequest{NewRoot: config.RootConfig{Source: "file", File: config.FileRootConfig{RootCert: h.b.spec.File.RootCert}}}, caerr.InvalidArgument, "name the new root's certificate and key"},
		"missing key":    {StartRequest{NewRoot: missing}, caerr.InvalidArgument, "root.file.rootKey"},
		"key mismatch":   {StartRequest{NewRoot: mismatch}, caerr.InvalidArgument, "root.file.rootKey"},
		"expired":        {StartRequest{NewRoot: expired.spec}, caerr.InvalidArgument, "expired"},
		"not a CA":       {StartRequest{NewRoot: notCA}, caerr.InvalidArgument, "CA"},
		"same as A":      {StartRequest{NewRoot: h.a.spec}, caerr.InvalidArgument, "already a root in force"},
		"cacerts":        {StartRequest{NewRoot: config.RootConfig{Source: "file", File: config.FileRootConfig{CACertsDir: "/x"}}}, caerr.InvalidArgument, "pre-issued"},
		"bad source":     {StartRequest{NewRoot: config.RootConfig{Source: "hsm"}}, caerr.InvalidArgument, `"hsm" is not supported`},
		"file to vault":  {StartRequest{NewRoot: config.RootConfig{Source: "vault", Vault: config.VaultConfig{Address: "https://vault:8200", Mount: "pki2"}}}, caerr.InvalidArgument, ""},
		"waits inverted": {StartRequest{NewRoot: h.b.spec, Waits: store.RootRotationWaits{WorkloadsMin: 2 * time.Hour, WorkloadsMax: time.Hour}}, caerr.InvalidArgument, "shorter than"},
		"negative wait":  {StartRequest{NewRoot: h.b.spec, Waits: store.RootRotationWaits{TTLMax: -time.Hour}}, caerr.InvalidArgument, "negative"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := h.c.Start(ctx, tc.req)
			require.Error(t, err)
			require.Equal(t, tc.code, caerr.CodeOf(err), "%v", err)
			require.Contains(t, err.Error(), tc.msg)
			_, err = h.st.GetRootRotation(ctx)
			require.ErrorIs(t, err, store.ErrNotFound, "nothing journaled")
			require.Equal(t, PhaseIdle, h.src.Phase())
			require.Equal(t, 0, h.mgr.refreshes)
		})
	}

	// A second start while one runs is a conflict.
	h.start()
	_, err := h.c.Start(ctx, StartRequest{NewRoot: other.spec})
	require.Equal(t, caerr.FailedPrecondition, caerr.CodeOf(err))
	require.ErrorContains(t, err, "is in phase publish-both-roots")
	require.Equal(t, h.b.cert.Raw, h.journal().NewRootDER)
}

// leafFiles writes a certificate that is not a CA, with its key.
func leafFiles(t *testing.T, h *harness) config.RootConfig {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	dir := t.TempDir()
	cp, kp := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	require.NoError(t, os.WriteFile(cp, root.EncodePEM(c), 0o644))
	require.NoError(t, keys.WriteKeyFile(kp, k))
	return config.RootConfig{Source: "file", File: config.FileRootConfig{RootCert: cp, RootKey: kp}}
}
