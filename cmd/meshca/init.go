package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/store/storeopen"
	"github.com/meshca/meshca/rotation/intermediate"
)

func newInitCommand(g *globals) *cobra.Command {
	var (
		force       bool
		rootAlg     string
		rootLife    config.Duration
		trustDomain string
		prof        string
		pqAlg       string
		keyStoreURI string
	)
	rootLife.Duration = 10 * 365 * 24 * time.Hour
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a development root and intermediate in a directory",
		Long: `init creates a self-signed development root and meshca's first intermediate
in DIR, for a certificate profile, and records the intermediate as CA
generation 1 in DIR/meshca.db.

  DIR/root-cert.pem    development root certificate
  DIR/root-key.pem     its private key (mode 0600)
  DIR/root-pq-key.pem  its ML-DSA key (catalyst only; mode 0600)
  DIR/keys/            intermediate keys (mode 0600; ML-DSA keys seed-only);
                       with --key-store-uri only the ML-DSA key (catalyst):
                       the classical intermediate key is generated in the
                       PKCS#11 token (HSMs don't offer ML-DSA yet)
  DIR/pq-anchor.pem    the post-quantum trust anchor (not for classical)
  DIR/meshca.yaml      the configuration 'meshca serve --dir DIR' reads
  DIR/meshca.db        the embedded store (issuance records, CA generations)

Profiles (--profile):
  catalyst   (default) the classical chain Envoy verifies, plus ML-DSA
             alternative signatures (ITU-T X.509 2.5.29.72-74) on every
             certificate, checked by PQ-aware parties (meshca verify --pq)
  classical  RSA/ECDSA/Ed25519 only
  composite  composite ML-DSA signatures (MLDSA65-ECDSA-P256-SHA512 by
             default), for PQ-aware relying parties only
  mldsa      pure ML-DSA signatures (RFC 9881), for PQ-only relying parties

For production, keep the root offline or in Vault and point a configuration
file at it instead. init refuses to overwrite an existing CA without --force.`,
		Example: `  meshca init --dir ./.meshca
  meshca init --dir ./.meshca-pq --profile composite
  meshca init --dir ./.meshca-87 --profile catalyst --pq-algorithm ML-DSA-87
  meshca init --dir /var/lib/meshca --root-key-algorithm EC-P384 --force
  meshca init --dir ./.meshca-hsm --key-store-uri 'pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=meshca?pin-source=/etc/meshca/hsm-pin'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := profile.Parse(prof)
			if err != nil {
				return fmt.Errorf("--profile: %w", err)
			}
			dir := g.dir
			existing := []string{}
			for _, n := range []string{config.RootCertFile, config.RootKeyFile, config.RootPQKeyFile, config.PQAnchorFile, config.StoreFile, config.KeysDir, dirConfigFile} {
				if fileExists(filepath.Join(dir, n)) {
					existing = append(existing, filepath.Join(dir, n))
				}
			}
			// Never under a running CA, --force or not: its open store
			// and keys would be unlinked beneath it, and every record it
			// acknowledges from then on lost when it stops. Checked first,
			// so that the advice is not --force, which would be refused.
			if why, ok := caInUse(dir); ok {
				return fmt.Errorf("%s; refusing to replace a running CA: stop it first", why)
			}
			if len(existing) > 0 && !force {
				return fmt.Errorf("%s already holds a CA (%v); refusing to overwrite it. Use --force to replace it", dir, existing)
			}
			for _, p := range existing {
				if err := os.RemoveAll(p); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			alg := keys.Algorithm(rootAlg)
			cfg := config.Defaults(dir)
			cfg.TrustDomain = trustDomain
			cfg.Intermediate.Profile, cfg.Intermediate.PQAlgorithm, cfg.Issuance.Profile = p, pqAlg, ""
			if keyStoreURI != "" {
				cfg.KeyStore.Type, cfg.KeyStore.URI = "pkcs11", keyStoreURI
			}
			cfg.Init()
			if err := cfg.Validate(); err != nil {
				return err
			}
			rc, err := authority.CreateRoot(cmd.Context(), cfg, authority.RootRequest{
				CommonName: "meshca development root", Organization: "meshca", Lifetime: rootLife.Duration, KeyAlgorithm: alg,
			})
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, dirConfigFile), []byte(dirConfig(cfg)), 0o644); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), "warn", "text")
			rt, _, err := intermediate.Open(cmd.Context(), cfg, nil, log, nil)
			if err != nil {
				return err
			}
			defer rt.Close()
			m := rt.Authority.Material()
			ic := cfg.Intermediate
			rootKeys, interKeys := string(alg), string(ic.KeyAlgorithm)
			switch p {
			case profile.Catalyst:
				rootKeys += " + " + ic.PQAlgorithm + " alternative key"
				interKeys += " + " + ic.PQAlgorithm + " alternative key"
			case profile.Composite, profile.MLDSA:
				rootKeys, interKeys = ic.PQAlgorithm, ic.PQAlgorithm
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Created a development CA in %s (trust domain %s, profile %s)\n", dir, cfg.TrustDomain, p)
			fmt.Fprintf(out, "  root certificate   %s  (%s, expires %s)\n", cfg.Root.File.RootCert, rootKeys, rc.NotAfter.UTC().Format(time.DateOnly))
			fmt.Fprintf(out, "  root key           %s  (mode 0600)\n", cfg.Root.File.RootKey)
			if p == profile.Catalyst {
				fmt.Fprintf(out, "  root ML-DSA key    %s  (mode 0600, seed-only PKCS#8)\n", cfg.Root.File.RootPQKey)
			}
			fmt.Fprintf(out, "  intermediate       generation %d, %s, expires %s\n", m.Generation, interKeys, m.Bundle.Cert.NotAfter.UTC().Format(time.DateOnly))
			if keyStoreURI == "" {
				fmt.Fprintf(out, "  intermediate keys  %s  (mode 0600)\n", cfg.KeyStore.Dir)
			} else {
				fmt.Fprintf(out, "  intermediate key   in the PKCS#11 token %s (keyStore.uri)\n", tokenLabel(keyStoreURI))
				if p == profile.Catalyst {
					fmt.Fprintf(out, "  ML-DSA key         %s  (mode 0600; HSMs don't offer ML-DSA yet)\n", cfg.KeyStore.Dir)
				}
			}
			if p.PostQuantum() {
				fmt.Fprintf(out, "  post-quantum anchor %s  (trust it for meshca verify --pq)\n", authority.PQAnchorPath(cfg))
			}
			fmt.Fprintf(out, "  leaf profile       %s\n", cfg.Issuance.Profile)
			fmt.Fprintf(out, "  configuration      %s\n", filepath.Join(dir, dirConfigFile))
			fmt.Fprintf(out, "  store              %s\n", cfg.Store.Describe())
			if p == profile.Composite || p == profile.MLDSA {
				fmt.Fprintf(out, "Note: Envoy and Go's crypto/x509 cannot verify %s certificates; use them only with PQ-aware relying parties.\n", p)
			}
			fmt.Fprintf(out, "Next: meshca serve --dir %s\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&g.dir, "dir", config.DefaultDir, "directory to create the CA in")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing CA in DIR (its keys and records are deleted)")
	cmd.Flags().StringVar(&prof, "profile", string(profile.Default), fmt.Sprintf("certificate profile of the CA: one of %v", profile.All))
	cmd.Flags().StringVar(&pqAlg, "pq-algorithm", "", "post-quantum key: ML-DSA-65 (default), ML-DSA-44 or ML-DSA-87 for catalyst and mldsa; MLDSA65-ECDSA-P256-SHA512 (default) or MLDSA44-ECDSA-P256-SHA256 for composite")
	cmd.Flags().StringVar(&rootAlg, "root-key-algorithm", string(keys.ECP256), fmt.Sprintf("classical root key algorithm (classical and catalyst): one of %v", keys.Algorithms))
	cmd.Flags().Var(&rootLife, "root-lifetime", "root certificate lifetime, e.g. 3650d")
	cmd.Flags().StringVar(&keyStoreURI, "key-store-uri", "", "generate the intermediate's classical key in a PKCS#11 token: a pkcs11: URI with module-path, token and pin-source (keyStore.uri; profiles classical and catalyst)")
	cmd.Flags().StringVar(&trustDomain, "trust-domain", config.DefaultTrustDomain, "SPIFFE trust domain of the mesh")
	return cmd
}

// dirConfigFile is the configuration that init writes into DIR; paths in it
// are relative to DIR.
const dirConfigFile = "meshca.yaml"

// dirConfig is the configuration init writes for cfg's trust domain and
// profile.
func dirConfig(cfg *config.Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by 'meshca init'. Paths are relative to this directory.
# See deploy/examples/meshca.yaml for every key.
trustDomain: %s
root:
  source: file
  file:
    rootCert: root-cert.pem
    rootKey: root-key.pem
`, cfg.TrustDomain)
	if cfg.Intermediate.Profile == profile.Catalyst {
		b.WriteString("    rootPQKey: root-pq-key.pem\n")
	}
	fmt.Fprintf(&b, "intermediate:\n  profile: %s\n", cfg.Intermediate.Profile)
	if cfg.Intermediate.PQAlgorithm != "" {
		fmt.Fprintf(&b, "  pqAlgorithm: %s\n", cfg.Intermediate.PQAlgorithm)
	}
	fmt.Fprintf(&b, `issuance:
  profile: %s
`, cfg.Issuance.Profile)
	if cfg.KeyStore.Type == "pkcs11" {
		// The URI names the PIN file (pin-source), never the PIN.
		fmt.Fprintf(&b, "keyStore:\n  type: pkcs11\n  uri: '%s'\n  dir: keys\n", strings.ReplaceAll(cfg.KeyStore.URI, "'", "''"))
	} else {
		b.WriteString("keyStore:\n  type: softkms\n  dir: keys\n")
	}
	b.WriteString("store:\n  type: bolt\n  path: meshca.db\n")
	return b.String()
}

// tokenLabel is the token attribute of a pkcs11: URI (RFC 7512), or the
// URI's first path attribute when it names the token otherwise.
func tokenLabel(uri string) string {
	path, _, _ := strings.Cut(strings.TrimPrefix(uri, "pkcs11:"), "?")
	for _, attr := range strings.Split(path, ";") {
		if v, ok := strings.CutPrefix(attr, "token="); ok {
			return v
		}
	}
	return "named by the URI"
}

// caInUse says why the CA in dir is in use by another meshca process: its
// store (with dir's own meshca.yaml, else the defaults) is held, as a
// bbolt store is by serve, or a serve answers on its admin socket, as one
// on PostgreSQL does.
func caInUse(dir string) (string, bool) {
	cfg := config.Defaults(dir)
	if p := filepath.Join(dir, dirConfigFile); fileExists(p) {
		if c, err := config.Load(p); err == nil {
			cfg = c
		}
	}
	if storeopen.HeldByAnother(cfg.Store) {
		return fmt.Sprintf("store %s is held by another meshca process (meshca serve?)", cfg.Store.Path), true
	}
	if c, ok := liveServe(cfg); ok {
		_ = c.Close()
		return fmt.Sprintf("a meshca serve answers on its admin socket %s", cfg.Server.AdminSocket), true
	}
	return "", false
}
