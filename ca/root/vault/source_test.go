package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
)

// vaultCerts counts the certificates Vault's mount has issued.
func vaultCerts(t *testing.T, p *pki) int {
	t.Helper()
	sec, err := vaultEnv.Client.Logical().ListWithContext(testCtx(t), p.mount+"/certs")
	require.NoError(t, err)
	if sec == nil {
		return 0
	}
	return len(sec.Data["keys"].([]any))
}

// TestSource_IsARootSourceThatMintsFromTheCSR: through root.Source alone,
// Vault signs the request's CSR, its root anchors the bundle and it
// supplies the root's CRL; what is not a valid request for Vault is
// refused before Vault is called, and Vault signs nothing.
func TestSource_IsARootSourceThatMintsFromTheCSR(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "source")
	s, _ := newSource(t, p.config())
	var src root.Source = s
	require.Equal(t, root.KindVault, src.Kind())
	require.Equal(t, root.Capabilities{Mint: true, RootCRL: true}, src.Capabilities())
	require.NoError(t, src.Health())
	crl := src.CurrentCRL()
	require.NotNil(t, crl)
	require.NoError(t, crl.CheckSignatureFrom(p.root))
	roots, err := src.Roots(ctx)
	require.NoError(t, err)
	require.Len(t, roots, 1)
	require.True(t, roots[0].Equal(p.root))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	req, err := root.NewIntermediateRequest(root.CAKey{Signer: key}, tmpl, time.Now())
	require.NoError(t, err)
	issued := vaultCerts(t, p)
	b, err := src.MintIntermediate(ctx, req)
	require.NoError(t, err)
	require.Equal(t, issued+1, vaultCerts(t, p))
	require.NoError(t, b.Cert.CheckSignatureFrom(p.root))
	require.True(t, key.PublicKey.Equal(b.Cert.PublicKey))
	require.Equal(t, "meshca intermediate", b.Cert.Subject.CommonName)
	require.Equal(t, []string{"meshca"}, b.Cert.Subject.Organization)
	require.True(t, b.Cert.MaxPathLenZero)
	require.Empty(t, b.Intermediates)
	require.Len(t, b.Roots, 1)
	require.True(t, b.Roots[0].Equal(p.root))
	require.NoError(t, b.Verify(time.Now()))
	opensslVerify(t, p.root, b.Cert, signLeaf(t, b.Cert, key))

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	otherReq, err := root.NewIntermediateRequest(root.CAKey{Signer: other}, tmpl, time.Now())
	require.NoError(t, err)
	swapped := req
	swapped.PublicKeyInfo = otherReq.PublicKeyInfo
	_, err = src.MintIntermediate(ctx, swapped)
	require.EqualError(t, err, "vault sign-intermediate: the intermediate CSR is for another key than the request's")

	mldsa, err := pqc.GenerateKey("ML-DSA-65", nil)
	require.NoError(t, err)
	pqReq, err := root.NewIntermediateRequest(root.CAKey{Signer: mldsa}, tmpl, time.Now())
	require.NoError(t, err)
	require.Empty(t, pqReq.CSR)
	_, err = src.MintIntermediate(ctx, pqReq)
	require.EqualError(t, err, "vault sign-intermediate: the request carries no CSR: Vault signs intermediates for classical keys only (intermediate.profile classical)")

	require.Equal(t, issued+1, vaultCerts(t, p), "Vault signed nothing for the refused requests")
}

// TestSource_HealthReportsTheOutage: Health follows the health checks:
// an outage is root.ErrUnavailable, and it clears once Vault answers.
func TestSource_HealthReportsTheOutage(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "source-health")
	s, _ := newSource(t, p.config())
	require.NoError(t, s.Health())

	require.NoError(t, vaultEnv.Seal(ctx))
	sealed := true
	t.Cleanup(func() {
		if sealed {
			_ = vaultEnv.Unseal(testCtx(t))
		}
	})
	require.Error(t, s.Probe(ctx))
	err := s.Health()
	require.ErrorIs(t, err, root.ErrUnavailable)
	var ue *UnavailableError
	require.True(t, errors.As(err, &ue))
	require.True(t, ue.Sealed)
	require.Equal(t, "health", ue.Op)

	require.NoError(t, vaultEnv.Unseal(ctx))
	sealed = false
	require.NoError(t, s.Probe(ctx))
	require.NoError(t, s.Health())
}
