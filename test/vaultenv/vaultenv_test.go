package vaultenv_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshca/meshca/test/vaultenv"
)

var vault *vaultenv.Env

func TestMain(m *testing.M) { os.Exit(vaultenv.RunMain(m, &vault)) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestStart_ServesExpectedVersionUnsealed(t *testing.T) {
	h, err := vault.Client.Sys().HealthWithContext(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Initialized || h.Sealed || h.Standby {
		t.Fatalf("health = %+v, want initialized, unsealed, active", h)
	}
	if h.Version != vaultenv.VaultVersion {
		t.Fatalf("version = %q, want %q", h.Version, vaultenv.VaultVersion)
	}
	if !strings.HasPrefix(vault.Addr, "http://127.0.0.1:") {
		t.Fatalf("Addr = %q, want a loopback URL", vault.Addr)
	}
	self, err := vault.Client.Auth().Token().LookupSelfWithContext(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := self.TokenID(); id != vault.RootToken {
		t.Fatalf("token id = %q, want the root token", id)
	}
	if pol, _ := self.TokenPolicies(); len(pol) != 1 || pol[0] != "root" {
		t.Fatalf("policies = %v, want [root]", pol)
	}
}

func TestPKI_GeneratesECP384Root(t *testing.T) {
	c := ctx(t)
	if err := vault.Client.Sys().MountWithContext(c, "pki-smoke", &vaultapi.MountInput{
		Type:   "pki",
		Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vault.Client.Sys().Unmount("pki-smoke") })
	sec, err := vault.Client.Logical().WriteWithContext(c, "pki-smoke/root/generate/internal", map[string]any{
		"common_name": "meshca smoke root",
		"key_type":    "ec",
		"key_bits":    384,
		"ttl":         "87600h",
	})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _ := sec.Data["certificate"].(string)
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no PEM certificate in response: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		t.Fatalf("root key = %T, want ECDSA P-384", cert.PublicKey)
	}
	if !cert.IsCA || cert.Subject.CommonName != "meshca smoke root" {
		t.Fatalf("root IsCA=%v CN=%q, want CA %q", cert.IsCA, cert.Subject.CommonName, "meshca smoke root")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Fatalf("root is not self-signed: %v", err)
	}

	// The raw PEM endpoint serves the same root.
	raw, err := vault.Client.Logical().ReadRawWithContext(c, "pki-smoke/cert/ca/raw/pem")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Body.Close()
	if raw.StatusCode != http.StatusOK {
		t.Fatalf("GET cert/ca/raw/pem: status %d", raw.StatusCode)
	}
	body, err := io.ReadAll(raw.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(body)) != strings.TrimSpace(certPEM) {
		t.Fatalf("cert/ca/raw/pem differs from the generated root")
	}
}

func TestAppRole_LoginReturnsTokenWithPolicy(t *testing.T) {
	c := ctx(t)
	if err := vault.Client.Sys().EnableAuthWithOptionsWithContext(c, "approle", &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vault.Client.Sys().DisableAuth("approle") })
	if _, err := vault.Client.Logical().WriteWithContext(c, "auth/approle/role/meshca", map[string]any{
		"token_policies": []string{"default"},
		"token_ttl":      "20m",
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := vault.Client.Logical().ReadWithContext(c, "auth/approle/role/meshca/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := vault.Client.Logical().WriteWithContext(c, "auth/approle/role/meshca/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	anon, err := vault.NewClient("")
	if err != nil {
		t.Fatal(err)
	}
	login, err := anon.Logical().WriteWithContext(c, "auth/approle/login", map[string]any{
		"role_id":   rid.Data["role_id"],
		"secret_id": sid.Data["secret_id"],
	})
	if err != nil {
		t.Fatal(err)
	}
	if login.Auth == nil || login.Auth.ClientToken == "" {
		t.Fatalf("approle login returned no token: %+v", login)
	}
	if login.Auth.LeaseDuration != 1200 {
		t.Fatalf("lease = %ds, want 1200", login.Auth.LeaseDuration)
	}
	if want := []string{"default"}; len(login.Auth.TokenPolicies) != 1 || login.Auth.TokenPolicies[0] != want[0] {
		t.Fatalf("policies = %v, want %v", login.Auth.TokenPolicies, want)
	}

	// A wrong secret_id is refused with 400 "invalid role or secret ID".
	_, err = anon.Logical().WriteWithContext(c, "auth/approle/login", map[string]any{
		"role_id":   rid.Data["role_id"],
		"secret_id": "not-the-secret",
	})
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
		t.Fatalf("login with a wrong secret_id: err = %v, want a 400 response error", err)
	}
}

func TestSealUnseal_RefusesWhileSealedAndKeepsData(t *testing.T) {
	c := ctx(t)
	if err := vault.Client.Sys().MountWithContext(c, "kv-seal", &vaultapi.MountInput{Type: "kv"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vault.Client.Sys().Unmount("kv-seal") })
	if _, err := vault.Client.Logical().WriteWithContext(c, "kv-seal/x", map[string]any{"v": "kept"}); err != nil {
		t.Fatal(err)
	}

	if err := vault.Seal(c); err != nil {
		t.Fatal(err)
	}
	_, err := vault.Client.Logical().ReadWithContext(c, "kv-seal/x")
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("read while sealed: err = %v, want 503", err)
	}

	if err := vault.Unseal(c); err != nil {
		t.Fatal(err)
	}
	got, err := vault.Client.Logical().ReadWithContext(c, "kv-seal/x")
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Data["v"] != "kept" {
		t.Fatalf("after unseal read %+v, want v=kept", got)
	}
}

func TestPauseResume_TimesOutWhilePaused(t *testing.T) {
	c := ctx(t)
	client, err := vault.NewClient(vault.RootToken)
	if err != nil {
		t.Fatal(err)
	}
	client.SetClientTimeout(500 * time.Millisecond)

	if err := vault.Pause(); err != nil {
		t.Fatal(err)
	}
	_, err = client.Sys().HealthWithContext(c)
	if resumeErr := vault.Resume(); resumeErr != nil {
		t.Fatal(resumeErr)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("health while paused: err = %v, want a client timeout", err)
	}
	if _, err := client.Sys().HealthWithContext(c); err != nil {
		t.Fatalf("health after resume: %v", err)
	}
}

func TestStart_MissingBinaryFailsLoudly(t *testing.T) {
	_, err := vaultenv.Start(vaultenv.WithBinary(filepath.Join(t.TempDir(), "vault")))
	if err == nil {
		t.Fatal("Start with a missing binary succeeded")
	}
	if want := "run `make testbin`"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}
