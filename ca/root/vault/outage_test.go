package vault

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
)

func TestSeal_CallsFailFastTypedAndUpMetricRecoversWithinOneBackoff(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "seal")
	health := newStepSleeper()
	src, reg := newSource(t, p.config(), WithSleep(health.sleep))
	km, _ := newKeys(t)
	current, currentKey, _, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)
	csr, err := CSRFor(currentKey, "next")
	require.NoError(t, err)

	runLoop(t, src.RunHealth)
	require.Equal(t, p.config().HealthInterval.Duration, health.next(t), "a healthy Vault is checked every healthInterval")
	require.Equal(t, 1.0, gauge(t, reg, "meshca_root_source_up"))
	okBefore := gauge(t, reg, "meshca_root_source_last_success_timestamp_seconds")
	require.InDelta(t, float64(time.Now().Unix()), okBefore, 60)

	require.NoError(t, vaultEnv.Seal(ctx))
	sealed := true
	t.Cleanup(func() {
		if sealed {
			_ = vaultEnv.Unseal(testCtx(t))
		}
	})

	// Calls fail at once with the typed error; nothing falls back.
	start := time.Now()
	_, _, err = src.SignIntermediate(ctx, csr, "next", time.Hour)
	require.ErrorIs(t, err, ErrUnavailable)
	var ue *UnavailableError
	require.ErrorAs(t, err, &ue)
	require.True(t, ue.Sealed)
	require.Equal(t, "sign-intermediate", ue.Op)
	_, err = src.CRL(ctx)
	require.ErrorIs(t, err, ErrUnavailable)
	_, err = src.Roots(ctx)
	require.ErrorIs(t, err, ErrUnavailable)
	require.Less(t, time.Since(start), 2*time.Second, "calls to a sealed Vault must fail fast")
	// The last good trust material stays, and meshca keeps issuing with
	// its current intermediate.
	require.NotNil(t, src.CurrentCRL())
	require.True(t, src.CurrentRoots()[0].Equal(p.root))
	opensslVerify(t, p.root, current.Cert, signLeaf(t, current.Cert, currentKey))

	// The health loop sees the seal and retries with capped backoff.
	base, maxBackoff := p.config().InitialBackoff.Duration, p.config().MaxBackoff.Duration
	for range 5 {
		health.wake()
		d := health.next(t)
		require.Equal(t, 0.0, gauge(t, reg, "meshca_root_source_up"))
		require.LessOrEqual(t, d, base, "doubling from initialBackoff, capped at maxBackoff")
		require.GreaterOrEqual(t, d, base/2, "jitter keeps at least half")
		base = min(2*base, maxBackoff)
	}
	require.Equal(t, okBefore, gauge(t, reg, "meshca_root_source_last_success_timestamp_seconds"))

	require.NoError(t, vaultEnv.Unseal(ctx))
	sealed = false
	// The probe after the current backoff period sees Vault again.
	health.wake()
	require.Equal(t, p.config().HealthInterval.Duration, health.next(t))
	require.Equal(t, 1.0, gauge(t, reg, "meshca_root_source_up"))
	require.Greater(t, gauge(t, reg, "meshca_root_source_last_success_timestamp_seconds"), okBefore)
	_, _, err = src.SignIntermediate(ctx, csr, "next", time.Hour)
	require.NoError(t, err)
}

func TestBackoff_DoublesFromInitialAndIsCappedWithJitter(t *testing.T) {
	s := &Source{cfg: config.VaultConfig{
		InitialBackoff: config.Duration{Duration: time.Second},
		MaxBackoff:     config.Duration{Duration: 10 * time.Second},
	}}
	b := s.retryBackoff()
	b.Jitter = 0 // the bottom of each range
	var got []time.Duration
	next := b.DelayFunc()
	for range 7 {
		got = append(got, next())
	}
	require.Equal(t, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
		5 * time.Second, 5 * time.Second, 5 * time.Second}, got)
	next = s.retryBackoff().DelayFunc()
	for a := range 50 {
		d := next()
		base := min(time.Second<<min(a, 8), 10*time.Second)
		require.LessOrEqual(t, d, base)
		require.GreaterOrEqual(t, d, base/2)
	}
}

func TestRevokedToken_NextCallLogsInAgainWithAppRole(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "revoke")
	var logs bytes.Buffer
	src, _ := newSource(t, p.config(), WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	km, _ := newKeys(t)
	old := src.api.Token()
	require.EqualValues(t, 1, src.logins.Load())

	_, err := vaultEnv.Client.Logical().WriteWithContext(ctx, "auth/token/revoke", map[string]any{"token": old})
	require.NoError(t, err)
	_, err = vaultEnv.Client.Logical().WriteWithContext(ctx, "auth/token/lookup", map[string]any{"token": old})
	require.Error(t, err, "the token should be gone")

	_, _, _, err = mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 2, src.logins.Load())
	require.NotEqual(t, old, src.api.Token())

	// Tokens and the secret_id never reach the logs.
	secretID, err := os.ReadFile(p.secret)
	require.NoError(t, err)
	require.Contains(t, logs.String(), "logged in to vault")
	for _, secret := range []string{old, src.api.Token(), strings.TrimSpace(string(secretID))} {
		require.NotContains(t, logs.String(), secret)
	}
}

func TestHealth_SourceStaysDownWhileLoginFailsAndComesBackWhenItWorks(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "relogin")
	health := newStepSleeper()
	src, reg := newSource(t, p.config(), WithSleep(health.sleep))
	secretID, err := os.ReadFile(p.secret)
	require.NoError(t, err)
	runLoop(t, src.RunHealth)
	health.next(t)
	require.Equal(t, 1.0, gauge(t, reg, "meshca_root_source_up"))

	// The token is revoked and the secret_id on disk is wrong: signing fails
	// with the login error, and the health loop reports the source down.
	_, err = vaultEnv.Client.Logical().WriteWithContext(ctx, "auth/token/revoke", map[string]any{"token": src.api.Token()})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p.secret, []byte("not-the-secret-id"), 0o600))
	csr, err := CSRFor(newTestKey(t), "x")
	require.NoError(t, err)
	_, _, err = src.SignIntermediate(ctx, csr, "x", time.Hour)
	require.ErrorContains(t, err, "root.vault.auth: approle login at auth/approle/login was refused")
	health.wake()
	require.LessOrEqual(t, health.next(t), p.config().MaxBackoff.Duration)
	require.Equal(t, 0.0, gauge(t, reg, "meshca_root_source_up"))

	// The secret_id is fixed: the next probe logs in and the source is up.
	require.NoError(t, os.WriteFile(p.secret, secretID, 0o600))
	health.wake()
	require.Equal(t, p.config().HealthInterval.Duration, health.next(t))
	require.Equal(t, 1.0, gauge(t, reg, "meshca_root_source_up"))
	_, _, err = src.SignIntermediate(ctx, csr, "x", time.Hour)
	require.NoError(t, err)
}

func TestTokenFile_RotatedFileIsReadAgainWhenVaultRefusesTheOldToken(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "tokenfile")
	mint := func() string {
		sec, err := vaultEnv.Client.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{
			Policies: []string{p.policy}, NoDefaultPolicy: true, TTL: "1h",
		})
		require.NoError(t, err)
		return sec.Auth.ClientToken
	}
	file := filepath.Join(t.TempDir(), "token")
	first := mint()
	require.NoError(t, os.WriteFile(file, []byte(first), 0o600))
	cfg := p.config()
	cfg.Auth = config.VaultAuthConfig{Method: config.VaultAuthToken, TokenFile: file}
	src, _ := newSource(t, cfg)
	km, _ := newKeys(t)
	lease := src.lease.Load()
	require.True(t, lease.renewable)
	require.InDelta(t, time.Hour.Seconds(), lease.ttl.Seconds(), 60)

	// An agent rotates the file and the old token is revoked.
	second := mint()
	require.NoError(t, os.WriteFile(file, []byte(second), 0o600))
	require.NoError(t, vaultEnv.Client.Auth().Token().RevokeTreeWithContext(ctx, first))

	_, _, _, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)
	require.Equal(t, second, src.api.Token())
}

func TestTokenEnv_TokenIsTakenFromVAULT_TOKEN(t *testing.T) {
	p := newPKI(t, "tokenenv")
	sec, err := vaultEnv.Client.Auth().Token().CreateWithContext(testCtx(t), &vaultapi.TokenCreateRequest{
		Policies: []string{p.policy}, NoDefaultPolicy: true, TTL: "1h",
	})
	require.NoError(t, err)
	cfg := p.config()
	cfg.Auth = config.VaultAuthConfig{Method: config.VaultAuthToken}
	env := map[string]string{"VAULT_TOKEN": sec.Auth.ClientToken}
	src, _ := newSource(t, cfg, WithEnv(func(k string) string { return env[k] }))
	require.Equal(t, sec.Auth.ClientToken, src.api.Token())

	_, err = New(testCtx(t), cfg, WithLogger(quietLog()), WithEnv(func(string) string { return "" }))
	require.ErrorContains(t, err, "needs tokenFile or the VAULT_TOKEN environment variable")
}

func TestTokenRenewal_RenewsAtTwoThirdsAndLogsInAgainWhenNotRenewable(t *testing.T) {
	p := newPKI(t, "renew")
	renew := newStepSleeper()
	src, _ := newSource(t, p.config(), WithSleep(renew.sleep))
	token := src.api.Token()
	runLoop(t, src.RunTokenRenewal)

	// A 1h renewable AppRole token is renewed after about 40 minutes.
	require.InDelta(t, (40 * time.Minute).Seconds(), renew.next(t).Seconds(), 5)
	renew.wake()
	renew.next(t)
	require.EqualValues(t, 1, src.renewals.Load())
	require.EqualValues(t, 1, src.logins.Load())
	require.Equal(t, token, src.api.Token())
	self, err := src.api.Auth().Token().LookupSelfWithContext(testCtx(t))
	require.NoError(t, err)
	require.NotNil(t, self.Data["last_renewal_time"], "Vault did not record a renewal")

	// A batch token cannot be renewed: meshca logs in again instead.
	p.addRole(t, p.role+"-batch", map[string]any{"token_policies": []string{p.policy}, "token_type": "batch"})
	batch := newStepSleeper()
	src2, _ := newSource(t, p.config(), WithSleep(batch.sleep))
	require.False(t, src2.lease.Load().renewable)
	first := src2.api.Token()
	runLoop(t, src2.RunTokenRenewal)
	require.InDelta(t, (40 * time.Minute).Seconds(), batch.next(t).Seconds(), 5)
	batch.wake()
	batch.next(t)
	require.EqualValues(t, 0, src2.renewals.Load())
	require.EqualValues(t, 2, src2.logins.Load())
	require.NotEqual(t, first, src2.api.Token())
}

func TestLoginFailure_NamesTheMethodAndNeverTheSecret(t *testing.T) {
	p := newPKI(t, "badlogin")
	require.NoError(t, os.WriteFile(p.secret, []byte("wrong-secret-id-value"), 0o600))
	_, err := New(testCtx(t), p.config(), WithLogger(quietLog()))
	require.ErrorContains(t, err, "root.vault.auth: approle login at auth/approle/login was refused")
	require.ErrorContains(t, err, "invalid role or secret ID")
	require.NotContains(t, err.Error(), "wrong-secret-id-value")
	require.False(t, errors.Is(err, ErrUnavailable))
}
