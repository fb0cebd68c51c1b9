package authority_test

import (
	"context"
	"crypto"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

// faultySigner stands for a hardware token or remote signer that returns a
// corrupted signature: the CA's own key, answered through a wrapper.
type faultySigner struct{ key crypto.Signer }

func (f faultySigner) Public() crypto.PublicKey { return f.key.Public() }

func (f faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := f.key.Sign(r, digest, opts)
	if err == nil {
		sig[len(sig)-1] ^= 0x01
	}
	return sig, err
}

// In both modes a signer that is not an in-process software key is
// checked: its corrupted signature is refused, nothing is recorded and the
// caller is not given the certificate.
func TestSign_AFaultySignerOutsideTheProcessIsRefusedInEveryMode(t *testing.T) {
	for _, mode := range []certenc.VerifyMode{certenc.VerifyAuto, certenc.VerifyAlways} {
		t.Run(mode.String(), func(t *testing.T) {
			ca := newTestCA(t)
			m := ca.rt.Authority.Material()
			faulty, err := authority.NewMaterial(m.Generation, m.Bundle, root.CAKey{Signer: faultySigner{m.Signer}}, profile.Classical)
			require.NoError(t, err)
			pol, err := authority.PolicyFromConfig(ca.cfg)
			require.NoError(t, err)
			a := authority.New(faulty, pol, ca.rt.Store, authority.WithVerifySignatures(mode))

			res, err := a.Sign(context.Background(), authority.Request{CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload)})
			require.Nil(t, res)
			require.Equal(t, caerr.Internal, caerr.CodeOf(err))
			require.Equal(t, "sign_failed", caerr.ReasonOf(err))
			require.ErrorContains(t, err, "certenc: signature returned by signer is invalid: ECDSA verification failure")
			require.Zero(t, countRecords(t, ca.rt.Store))
		})
	}
}

func TestOpen_VerifySignaturesReachesTheEngine(t *testing.T) {
	require.Equal(t, certenc.VerifyAuto, authority.VerifyModeOf(config.VerifySignaturesAuto))
	require.Equal(t, certenc.VerifyAlways, authority.VerifyModeOf(config.VerifySignaturesAlways))
	for _, v := range []string{config.VerifySignaturesAuto, config.VerifySignaturesAlways} {
		ca := newTestCA(t, func(c *config.Config) { c.Issuance.VerifySignatures = v })
		_, err := ca.rt.Authority.Sign(context.Background(), authority.Request{CSR: istioCSR(t, newKey(t, "p256"), workload), Identity: spiffe(t, workload)})
		require.NoError(t, err, v)
	}
}
