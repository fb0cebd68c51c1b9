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
	signer, keyRef, err := km.Create("intermediate-1", keys.ECP256)
	if err != nil {
		log.Fatal(err)
	}
	req, err := root.NewIntermediateRequest(root.CAKey{Signer: signer},
		root.IntermediateTemplate{CommonName: "meshca intermediate", Organization: "meshca", Lifetime: 365 * 24 * time.Hour}, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	var rs root.Source = src // what meshca's Loader sees: no question of which kind
	bundle, err := rs.MintIntermediate(ctx, req)
	if err != nil {
		log.Fatal(err) // errors.Is(err, root.ErrUnavailable): keep the current intermediate, retry later
	}
	_, _ = bundle, keyRef // record as a generation with source rs.Kind()
	_ = src.CurrentCRL()  // the root's CRL, for Istio's ca-crl.pem
}
