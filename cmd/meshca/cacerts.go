package main

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store/storeopen"
	"github.com/meshca/meshca/issuer/admin"
	"github.com/meshca/meshca/trustbundle/cacerts"
)

func newCACertsCommand(g *globals) *cobra.Command {
	var (
		out     string
		withCRL bool
	)
	cmd := &cobra.Command{
		Use:   "cacerts",
		Short: "Write Istio's plug-in CA files (the cacerts Secret content)",
		Long: `cacerts writes the active intermediate as Istio's plug-in CA files into OUT:

  ca-cert.pem     the signing intermediate
  ca-key.pem      its private key, PKCS#8 (mode 0600)
  cert-chain.pem  the intermediate up to the root, in that order
  root-cert.pem   every active root
  ca-crl.pem      only with --crl: a CRL from every certificate in
                  cert-chain.pem: meshca's own, rebuilt now with a new
                  CRLNumber, then the root's (built with meshca's root key,
                  or Vault's, or crl.rootCRL's); left out, with a warning,
                  when the root's CRL is not available; while serve
                  runs, the ca-crl.pem that serve publishes

Create the Secret from them with kubectl, or let 'meshca serve' publish it
(trustBundle.publishCACerts: true), which also keeps its CRLs current.

ca-crl.pem is left out by default. Istio 1.27+ enforces the CRLs of a
cacerts Secret that has ca-crl.pem, and fails every TLS handshake once they
pass their nextUpdate (crl.validity, 24h by default); nothing refreshes a
Secret made by hand from this folder, and without ca-crl.pem Istio does not
check CRLs at all. With --crl the file is written and the earliest
nextUpdate is printed on stderr: refresh the Secret before it.
This exports the intermediate key so that istiod can sign with it; it fails
when the key lives in an HSM or a KMS.

While 'meshca serve' holds the store, cacerts asks it over the admin socket
for the public files of the active generation (and, with --crl, the
ca-crl.pem it publishes) and for where the key is; the running service
never hands out the key itself. cacerts then reads the key file with its
own permissions (run it as serve's user), only from this configuration's
key directories (keyStore.dir, root.file.cacertsDir), and checks that it
matches ca-cert.pem. The folder is the one the offline export writes.
There is no --admin-address: the key is only on serve's host.

Without serve, cacerts opens the CA read-only: it exports the active
intermediate and never mints or activates one. When there is none that is good to sign with (none
yet, expired, past intermediate.activateThreshold), it fails and says to run
'meshca serve', which mints and activates one.`,
		Example: `  meshca cacerts --dir ./.meshca --out ./cacerts
  kubectl -n istio-system create secret generic cacerts --from-file=./cacerts

  # with CRLs: refresh the Secret before the nextUpdate printed on stderr
  meshca cacerts --dir ./.meshca --out ./cacerts --crl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			if c, ok := runningServe(cfg, false); ok {
				return exportLive(cmd, cfg, c, out, withCRL)
			}
			rt, err := authority.OpenReadOnly(cmd.Context(), cfg, newLogger(cmd.ErrOrStderr(), "warn", "text"))
			if errors.Is(err, storeopen.ErrLocked) {
				c, err := serveClient(cfg)
				if err != nil {
					return err
				}
				return exportLive(cmd, cfg, c, out, withCRL)
			}
			if err != nil {
				return g.explainReadOnly(cmd.Context(), cfg, err)
			}
			defer rt.Close()
			m := rt.Authority.Material()
			key, ok := m.Signer.(crypto.PrivateKey)
			if !ok || !exportable(key) {
				return fmt.Errorf("the intermediate key of generation %d cannot be exported (it lives in a key manager); Istio's plug-in mode needs the key in ca-key.pem", m.Generation)
			}
			var caCRL []byte
			if withCRL {
				if caCRL, err = exportCRL(cmd, cfg, rt); err != nil {
					return err
				}
				if err := crlAdvice(cmd, caCRL, out); err != nil {
					return err
				}
			}
			files, err := cacerts.Files(m.Bundle, key, caCRL)
			if err != nil {
				return err
			}
			return writeCACerts(cmd, out, m.Generation, files)
		},
	}
	addCAFlags(cmd, g)
	cmd.Flags().StringVar(&out, "out", "", "directory to write the files into (required)")
	cmd.Flags().BoolVar(&withCRL, "crl", false, "also write ca-crl.pem; Istio then enforces CRLs, and the Secret must be refreshed before the nextUpdate printed on stderr")
	return cmd
}

// exportLive writes the folder while meshca serve holds the store: the
// public files come from its admin socket, the key from the key file it
// names (liveCACerts).
func exportLive(cmd *cobra.Command, cfg *config.Config, c *admin.Client, out string, withCRL bool) error {
	defer c.Close()
	files, gen, err := liveCACerts(cmd.Context(), cfg, c, withCRL)
	if err != nil {
		return err
	}
	if withCRL {
		if err := crlAdvice(cmd, files[cacerts.KeyCRL], out); err != nil {
			return err
		}
	}
	return writeCACerts(cmd, out, gen, files)
}

func writeCACerts(cmd *cobra.Command, out string, gen uint64, files map[string][]byte) error {
	removed, err := cacerts.WriteDir(out, files)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(cmd.OutOrStdout(), "Wrote Istio cacerts for generation %d to %s: %v\n", gen, out, names)
	for _, n := range removed {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: removed %s from %s: it was an earlier export's and does not match these files (write it again with --crl)\n", n, out)
	}
	return nil
}

// exportCRL builds ca-crl.pem for the folder; nil when the root's CRL is
// not available.
func exportCRL(cmd *cobra.Command, cfg *config.Config, rt *authority.Runtime) ([]byte, error) {
	log := newLogger(cmd.ErrOrStderr(), "warn", "text")
	crls, err := newCRLManager(cmd.Context(), cfg, rt, nil, log, nil)
	if err != nil {
		return nil, err
	}
	return crls.CACRLPEM(), nil
}

// crlAdvice refuses --crl without a CRL to write (caCRL empty: nothing is
// written, so the folder keeps what it had rather than losing a ca-crl.pem
// the operator asked for), and warns, on stderr, when the earliest CRL
// expires (RFC 5280 section 5.1.2.5, nextUpdate).
func crlAdvice(cmd *cobra.Command, caCRL []byte, out string) error {
	if len(caCRL) == 0 {
		return fmt.Errorf("--crl: %s cannot be written (the log above says why: the root's CRL is not available, set crl.rootCRL for root.file.cacertsDir or check that the Vault mount serves its CRL; or the CRLs together exceed the ConfigMap limit); nothing was written to %s", cacerts.KeyCRL, out)
	}
	var next time.Time
	for rest := caCRL; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		l, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return fmt.Errorf("%s: %w", cacerts.KeyCRL, err)
		}
		if next.IsZero() || l.NextUpdate.Before(next) {
			next = l.NextUpdate
		}
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s expires at %s (its earliest nextUpdate); Istio then fails every TLS handshake. "+
		"Refresh the cacerts Secret made from %s before then, or let 'meshca serve' publish it (trustBundle.publishCACerts: true), which keeps %s current\n",
		cacerts.KeyCRL, next.UTC().Format(time.RFC3339), out, cacerts.KeyCRL)
	return nil
}
