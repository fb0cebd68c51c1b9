package main

import (
	"crypto"
	"errors"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/trustbundle/cacerts"
)

func newCACertsCommand(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "cacerts",
		Short: "Write Istio's plug-in CA files (the cacerts Secret content)",
		Long: `cacerts writes the active intermediate as Istio's plug-in CA files into OUT:

  ca-cert.pem     the signing intermediate
  ca-key.pem      its private key, PKCS#8 (mode 0600)
  cert-chain.pem  the intermediate up to the root, in that order
  root-cert.pem   every active root
  ca-crl.pem      a CRL from every certificate in cert-chain.pem (Istio 1.27+
                  enforces them): meshca's own, rebuilt now with a new
                  CRLNumber, then the root's (built with meshca's root key,
                  or Vault's, or crl.rootCRL's); left out, with a warning,
                  when the root's CRL is not available

Create the Secret from them with kubectl, or let 'meshca serve' publish it.
This exports the intermediate key so that istiod can sign with it; it fails
when the key lives in an HSM. It does not run while 'meshca serve' holds the
store: the running service never hands out its private key, and a folder
without ca-key.pem would make istiod fall back to a self-signed root. Stop
serve to export, or let serve publish the Secret
(trustBundle.publishCACerts: true); the public files need no key: the roots
are root-cert.pem, the CRLs come from 'meshca crl fetch'.

cacerts opens the CA read-only: it exports the active intermediate and never
mints or activates one. When there is none that is good to sign with (none
yet, expired, past intermediate.rotationThreshold), it fails and says to run
'meshca serve', which mints and activates one.`,
		Example: `  meshca cacerts --dir ./.meshca --out ./cacerts
  kubectl -n istio-system create secret generic cacerts --from-file=./cacerts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			rt, err := authority.OpenReadOnly(cmd.Context(), cfg, newLogger(cmd.ErrOrStderr(), "warn", "text"))
			if errors.Is(err, boltstore.ErrLocked) {
				// The admin socket never serves private keys.
				// A folder without ca-key.pem is no answer either: istiod
				// falls back to a self-signed root when the key is missing.
				return fmt.Errorf("meshca serve is running on this store (%w): cacerts exports the intermediate private key, which the running service never hands out; stop meshca serve and run cacerts again, or let the service publish the cacerts Secret (trustBundle.publishCACerts: true). The public parts need no key: the roots are %s, the CRLs come from 'meshca crl fetch'", err, cfg.Root.File.RootCert)
			}
			if err != nil {
				return err
			}
			defer rt.Close()
			m := rt.Authority.Material()
			key, ok := m.Signer.(crypto.PrivateKey)
			if !ok || !exportable(key) {
				return fmt.Errorf("the intermediate key of generation %d cannot be exported (it lives in a key manager); Istio's plug-in mode needs the key in ca-key.pem", m.Generation)
			}
			log := newLogger(cmd.ErrOrStderr(), "warn", "text")
			crls, err := newCRLManager(cmd.Context(), cfg, rt, nil, log, nil)
			if err != nil {
				return err
			}
			caCRL := crls.CACRLPEM()
			if caCRL == nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s is not written: the root's CRL is not available (set crl.rootCRL for root.file.cacertsDir); Istio runs without CRLs then\n", cacerts.KeyCRL)
			}
			files, err := cacerts.Files(m.Bundle, key, caCRL)
			if err != nil {
				return err
			}
			if err := cacerts.WriteDir(out, files); err != nil {
				return err
			}
			names := make([]string, 0, len(files))
			for n := range files {
				names = append(names, n)
			}
			sort.Strings(names)
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote Istio cacerts for generation %d to %s: %v\n", m.Generation, out, names)
			return nil
		},
	}
	addCAFlags(cmd, g)
	cmd.Flags().StringVar(&out, "out", "", "directory to write the files into (required)")
	return cmd
}
