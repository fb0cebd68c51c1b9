package vault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
)

func TestMintGeneration_VaultSignsIntermediateWhoseKeyNeverLeavesMeshca(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "mint")
	src, _ := newSource(t, p.config())
	km, keyDir := newKeys(t)

	b, signer, ref, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)

	// Signed by Vault's EC P-384 root, as meshca asked.
	require.NoError(t, b.Cert.CheckSignatureFrom(p.root))
	require.Equal(t, p.root.Subject.String(), b.Cert.Issuer.String())
	require.Equal(t, "meshca intermediate", b.Cert.Subject.CommonName)
	require.Equal(t, []string{"meshca"}, b.Cert.Subject.Organization)
	require.True(t, b.Cert.IsCA)
	require.True(t, b.Cert.MaxPathLenZero)
	require.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, b.Cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign))
	require.WithinDuration(t, time.Now().Add(tmpl.Lifetime), b.Cert.NotAfter, time.Minute)
	require.Len(t, b.Roots, 1)
	require.True(t, b.Roots[0].Equal(p.root))
	require.Empty(t, b.Intermediates)
	require.Equal(t, []*x509.Certificate{b.Cert, p.root}, b.Chain())

	// The key is in meshca's key store, as a 0600 file.
	require.Equal(t, keyDir, filepath.Dir(ref))
	st, err := os.Stat(ref)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	require.True(t, keyEqual(signer.Public(), b.Cert.PublicKey))

	// Vault holds only its root's key, and no issuer with meshca's key.
	logical := vaultEnv.Client.Logical()
	keyList, err := logical.ListWithContext(ctx, p.mount+"/keys")
	require.NoError(t, err)
	require.Equal(t, []any{p.rootID}, keyList.Data["keys"])
	issuers, err := logical.ListWithContext(ctx, p.mount+"/issuers")
	require.NoError(t, err)
	for _, id := range issuers.Data["keys"].([]any) {
		iss, err := logical.ReadWithContext(ctx, p.mount+"/issuer/"+id.(string))
		require.NoError(t, err)
		c := parsePEMCert(t, iss.Data["certificate"].(string))
		if keyEqual(c.PublicKey, b.Cert.PublicKey) {
			require.Empty(t, iss.Data["key_id"], "Vault stores meshca's intermediate as an issuer with a key")
		} else {
			require.Equal(t, p.rootID, iss.Data["key_id"])
		}
	}
	// What Vault keeps of the signed intermediate is its certificate only.
	stored, err := logical.ReadWithContext(ctx, p.mount+"/cert/"+serialColons(b.Cert))
	require.NoError(t, err)
	require.True(t, parsePEMCert(t, stored.Data["certificate"].(string)).Equal(b.Cert))
	require.Empty(t, stored.Data["private_key"])

	// Workload leaves signed by the new intermediate verify against Vault's
	// root with OpenSSL in strict mode.
	leaf := signLeaf(t, b.Cert, signer)
	opensslVerify(t, p.root, b.Cert, leaf)
}

func TestMintGeneration_RotationMintsNewKeyAndCertUnderSameRootWithoutGap(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "rotate")
	src, _ := newSource(t, p.config())
	km, _ := newKeys(t)

	first, firstKey, firstRef, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)
	second, secondKey, secondRef, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)

	require.NotEqual(t, firstRef, secondRef)
	require.False(t, keyEqual(first.Cert.PublicKey, second.Cert.PublicKey))
	require.NotEqual(t, first.Cert.SerialNumber, second.Cert.SerialNumber)
	require.False(t, first.Cert.Equal(second.Cert))
	// Both generations verify under the same root right now, so the old
	// one keeps signing until the new one is activated: no gap.
	now := time.Now()
	require.NoError(t, first.Verify(now))
	require.NoError(t, second.Verify(now))
	require.True(t, first.Roots[0].Equal(second.Roots[0]))
	opensslVerify(t, p.root, first.Cert, signLeaf(t, first.Cert, firstKey))
	opensslVerify(t, p.root, second.Cert, signLeaf(t, second.Cert, secondKey))
}

func TestSignIntermediate_RefusesGarbledCSRBeforeCallingVault(t *testing.T) {
	p := newPKI(t, "badcsr")
	src, _ := newSource(t, p.config())
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	good, err := CSRFor(key, "meshca intermediate")
	require.NoError(t, err)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-3] ^= 0xff // inside the signature

	for name, tc := range map[string]struct {
		csr  []byte
		want string
	}{
		"garbage":            {[]byte("not a CSR"), "the CSR does not parse"},
		"tampered signature": {tampered, "the CSR's signature is invalid"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := src.SignIntermediate(testCtx(t), tc.csr, "meshca intermediate", time.Hour)
			require.ErrorContains(t, err, tc.want)
		})
	}
	certs, err := vaultEnv.Client.Logical().ListWithContext(testCtx(t), p.mount+"/certs")
	require.NoError(t, err)
	require.Len(t, certs.Data["keys"], 1, "Vault issued something besides its root")
}

// opensslVerify runs `openssl verify -x509_strict` on leaf with inter as
// untrusted and root as the only trust anchor.
func opensslVerify(t *testing.T, root, inter, leaf *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	rootPath := writePEM(t, dir, "root.pem", root)
	interPath := writePEM(t, dir, "inter.pem", inter)
	leafPath := writePEM(t, dir, "leaf.pem", leaf)
	out, err := exec.Command("openssl", "verify", "-x509_strict", "-CAfile", rootPath, "-untrusted", interPath, leafPath).CombinedOutput()
	require.NoError(t, err, "openssl verify: %s", out)
	require.Equal(t, leafPath+": OK", strings.TrimSpace(string(out)))
}

func keyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// serialColons formats a serial as Vault names certificates: hex pairs
// separated by colons.
func serialColons(c *x509.Certificate) string {
	var parts []string
	for _, x := range c.SerialNumber.Bytes() {
		parts = append(parts, fmt.Sprintf("%02x", x))
	}
	return strings.Join(parts, ":")
}

func TestSignIntermediate_RefusesLifetimeCutByTheMountsMaxTTL(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "maxttl")
	require.NoError(t, vaultEnv.Client.Sys().TuneMountAllowNilWithContext(ctx, p.mount, vaultapi.TuneMountConfigInput{MaxLeaseTTL: ptr("100h")}))
	src, _ := newSource(t, p.config())
	km, _ := newKeys(t)

	_, _, _, err := mintGeneration(ctx, src, km, keys.ECP256, root.IntermediateTemplate{CommonName: "meshca intermediate", Lifetime: 720 * time.Hour}, time.Now())
	require.ErrorContains(t, err, "root.vault: refusing the intermediate Vault signed at "+p.mount+"/root/sign-intermediate: "+
		"the intermediate's lifetime was shortened by Vault to 100h0m0s (asked 720h0m0s): the mount's max lease TTL caps it; raise it (vault secrets tune -max-lease-ttl=720h0m0s "+p.mount+")")
	require.ErrorContains(t, err, `Vault warned: `)
	require.ErrorContains(t, err, `is longer than permitted maxTTL`)
}

func ptr[T any](v T) *T { return &v }
