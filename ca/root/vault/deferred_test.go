package vault

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
)

// A source opened WithDeferredValidation while Vault is sealed is down and
// refuses every call without asking Vault; the health loop retries with
// capped backoff and completes the checks once Vault is unsealed.
func TestDeferredValidation_SealedAtStartIsDownUntilTheHealthLoopValidates(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "deferred")
	require.NoError(t, vaultEnv.Seal(ctx))
	sealed := true
	t.Cleanup(func() {
		if sealed {
			_ = vaultEnv.Unseal(testCtx(t))
		}
	})

	// Without the option a sealed Vault still fails New.
	_, err := New(ctx, p.config(), WithLogger(quietLog()))
	require.ErrorContains(t, err, "root.vault.address: cannot use Vault at "+vaultEnv.Addr+": vault login: Vault is sealed")

	health := newStepSleeper()
	src, reg := newSource(t, p.config(), WithSleep(health.sleep), WithDeferredValidation())
	require.False(t, src.Validated())
	require.False(t, src.Up())
	require.Equal(t, 0.0, gauge(t, reg, "meshca_root_source_up"))
	require.Nil(t, src.CurrentRoots())
	require.Nil(t, src.CurrentCRL())
	_, err = src.Roots(ctx)
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorContains(t, err, "root.vault.address: cannot use Vault at "+vaultEnv.Addr+" (roots: its checks have not completed since start-up): vault login: Vault is sealed")
	_, err = src.CRL(ctx)
	require.ErrorIs(t, err, ErrUnavailable)
	km, _ := newKeys(t)
	_, _, _, err = mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.ErrorIs(t, err, ErrUnavailable)
	csr, err := CSRFor(newTestKey(t), "x")
	require.NoError(t, err)
	_, _, err = src.SignIntermediate(ctx, csr, "x", time.Hour)
	require.ErrorIs(t, err, ErrUnavailable)

	runLoop(t, src.RunHealth)
	for range 3 {
		d := health.next(t)
		require.Positive(t, d)
		require.LessOrEqual(t, d, p.config().MaxBackoff.Duration)
		require.False(t, src.Validated())
		require.Equal(t, 0.0, gauge(t, reg, "meshca_root_source_up"))
		health.wake()
	}
	health.next(t)
	require.NoError(t, vaultEnv.Unseal(ctx))
	sealed = false
	health.wake()
	require.Equal(t, p.config().HealthInterval.Duration, health.next(t))
	require.True(t, src.Validated())
	require.Equal(t, 1.0, gauge(t, reg, "meshca_root_source_up"))
	require.Len(t, src.CurrentRoots(), 1)
	require.True(t, src.CurrentRoots()[0].Equal(p.root))
	require.NoError(t, src.CurrentCRL().CheckSignatureFrom(p.root))
	b, _, _, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)
	require.NoError(t, b.Cert.CheckSignatureFrom(p.root))
}

// Bad configuration reported by a reachable Vault fails New even with
// WithDeferredValidation.
func TestDeferredValidation_ReachableVaultWithBadSetupStillFailsNew(t *testing.T) {
	p := newPKI(t, "deferred-bad")
	cfg := p.config()
	cfg.Mount = "pki-does-not-exist"
	_, err := New(testCtx(t), cfg, WithLogger(quietLog()), WithDeferredValidation())
	require.ErrorContains(t, err, `root.vault.mount: no PKI secrets engine is mounted at "pki-does-not-exist"`)
	require.NotErrorIs(t, err, ErrUnavailable)
}
