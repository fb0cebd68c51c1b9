package vault_test

import (
	"context"
	"log"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/root/vault"
)

// Mint meshca's intermediate through Vault: the key is created in meshca's
// key store and only a CSR goes to Vault.
func Example() {
	ctx := context.Background()
	cfg := config.VaultConfig{
		Address: "https://vault.vault.svc:8200",
		Mount:   "pki",
		Auth:    config.VaultAuthConfig{Method: config.VaultAuthKubernetes, Role: "meshca"},
	}
	cfg.Init()
	src, err := vault.New(ctx, cfg, vault.WithRegisterer(prometheus.DefaultRegisterer))
	if err != nil {
		log.Fatal(err) // names the key to fix: root.vault.mount, root.vault.auth, ...
	}
	go src.Run(ctx) // health, token renewal, CRL refresh

	km, err := keys.Open(ctx, keys.Config{Type: "softkms", Dir: "/var/lib/meshca/keys"})
	if err != nil {
		log.Fatal(err)
	}
	bundle, signer, keyRef, err := vault.MintGeneration(ctx, src, km, keys.ECP256,
		root.IntermediateTemplate{CommonName: "meshca intermediate", Organization: "meshca", Lifetime: 365 * 24 * time.Hour}, time.Now())
	if err != nil {
		log.Fatal(err) // errors.Is(err, vault.ErrUnavailable): keep the current intermediate, retry later
	}
	_, _, _ = bundle, signer, keyRef // record as a generation with source vault.SourceVault
	_ = src.CurrentCRL()             // the root's CRL, for Istio's ca-crl.pem
}
