package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
)

func newInitCommand(g *globals) *cobra.Command {
	var (
		force       bool
		rootAlg     string
		rootLife    config.Duration
		trustDomain string
	)
	rootLife.Duration = 10 * 365 * 24 * time.Hour
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a development root and intermediate in a directory",
		Long: `init creates a self-signed development root and meshca's first intermediate
in DIR, and records the intermediate as CA generation 1 in DIR/meshca.db.

  DIR/root-cert.pem    development root certificate
  DIR/root-key.pem     its private key (mode 0600)
  DIR/keys/            intermediate keys (mode 0600)
  DIR/meshca.db        the embedded store (issuance records, CA generations)

For production, keep the root offline or in Vault and point a configuration
file at it instead. init refuses to overwrite an existing CA without --force.`,
		Example: `  meshca init --dir ./.meshca
  meshca init --dir /var/lib/meshca --root-key-algorithm EC-P384 --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := g.dir
			existing := []string{}
			for _, n := range []string{config.RootCertFile, config.RootKeyFile, config.StoreFile, config.KeysDir, dirConfigFile} {
				if fileExists(filepath.Join(dir, n)) {
					existing = append(existing, filepath.Join(dir, n))
				}
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
			if err := cfg.Validate(); err != nil {
				return err
			}
			km, err := keys.Open(cmd.Context(), keys.Config{Type: "softkms", Dir: dir})
			if err != nil {
				return err
			}
			signer, keyPath, err := km.Create("root", alg)
			if err != nil {
				return err
			}
			if err := os.Rename(keyPath, cfg.Root.File.RootKey); err != nil {
				return err
			}
			rc, err := root.NewSelfSignedRoot(signer, "meshca development root", "meshca", rootLife.Duration, time.Now())
			if err != nil {
				return err
			}
			if err := os.WriteFile(cfg.Root.File.RootCert, root.EncodePEM(rc), 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, dirConfigFile), []byte(fmt.Sprintf(dirConfigTemplate, cfg.TrustDomain)), 0o644); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), "warn", "text")
			rt, err := authority.Open(cmd.Context(), cfg, log, nil)
			if err != nil {
				return err
			}
			defer rt.Close()
			m := rt.Authority.Material()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Created a development CA in %s (trust domain %s)\n", dir, cfg.TrustDomain)
			fmt.Fprintf(out, "  root certificate   %s  (%s, expires %s)\n", cfg.Root.File.RootCert, alg, rc.NotAfter.UTC().Format(time.DateOnly))
			fmt.Fprintf(out, "  root key           %s  (mode 0600)\n", cfg.Root.File.RootKey)
			fmt.Fprintf(out, "  intermediate       generation %d, %s, expires %s\n", m.Generation, cfg.Intermediate.KeyAlgorithm, m.Bundle.Cert.NotAfter.UTC().Format(time.DateOnly))
			fmt.Fprintf(out, "  intermediate keys  %s  (mode 0600)\n", cfg.KeyStore.Dir)
			fmt.Fprintf(out, "  configuration      %s\n", filepath.Join(dir, dirConfigFile))
			fmt.Fprintf(out, "  store              %s\n", cfg.Store.Path)
			fmt.Fprintf(out, "Next: meshca serve --dir %s\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&g.dir, "dir", config.DefaultDir, "directory to create the CA in")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing CA in DIR (its keys and records are deleted)")
	cmd.Flags().StringVar(&rootAlg, "root-key-algorithm", string(keys.ECP256), fmt.Sprintf("root key algorithm: one of %v", keys.Algorithms))
	cmd.Flags().Var(&rootLife, "root-lifetime", "root certificate lifetime, e.g. 3650d")
	cmd.Flags().StringVar(&trustDomain, "trust-domain", config.DefaultTrustDomain, "SPIFFE trust domain of the mesh")
	return cmd
}

// dirConfigFile is the configuration that init writes into DIR; paths in it
// are relative to DIR.
const dirConfigFile = "meshca.yaml"

const dirConfigTemplate = `# Written by 'meshca init'. Paths are relative to this directory.
# See deploy/examples/meshca.yaml for every key.
trustDomain: %s
root:
  source: file
  file:
    rootCert: root-cert.pem
    rootKey: root-key.pem
keyStore:
  type: softkms
  dir: keys
store:
  type: bolt
  path: meshca.db
`
