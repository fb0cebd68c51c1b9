package main

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/issuer/admin"
)

func newStatusCommand(g *globals) *cobra.Command {
	var rf remoteFlags
	var colour string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the health of the CA: every CA certificate, bundle and CRL, rotation and alerts",
		Long: `status is the operator's one-look view of the CA: every CA certificate (the
roots, the active intermediate, prepared and still-published retired
generations and, while serve publishes them, the cacerts Secret's and the
ClusterTrustBundles' certificates), the bundles holding them, every CRL
served, each with its expiry and health, the rotation controllers' phases,
the firing alerts, the store's health and the CA generations.

Health uses the thresholds of the alert rules: warning when less than 30% of
the lifetime or 7 days are left, critical under 3 days, then expired; a CRL
is stale once its nextUpdate has passed.

While 'meshca serve' runs it asks the service through its admin socket (or
the admin TCP listener with --admin-address); against a stopped service it
reads the store: meshca's own certificates, generations and alerts, and no
CRLs or rotation phases (meshca serve builds the CRLs and runs rotation).

The table is coloured on a terminal (--color auto, unless NO_COLOR is set)
and plain when piped. -o json prints the status document described in the
README ("meshca status").`,
		Example: `  meshca status --dir ./.meshca
  meshca status --dir ./.meshca -o json
  meshca status --dir ./.meshca --color=always | less -R
  meshca status --admin-address meshca.istio-system.svc:15443 --token-file token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := rf.json()
			if err != nil {
				return err
			}
			withColour, err := useColour(colour, cmd.OutOrStdout(), os.Getenv)
			if err != nil {
				return err
			}
			t, err := openTarget(g, &rf)
			if err != nil {
				return err
			}
			defer t.Close()
			var st admin.Status
			if t.client != nil {
				if st, err = t.client.Status(cmd.Context()); err != nil {
					return err
				}
			} else {
				st = offlineStatus(cmd.Context(), t.cfg, t.store).Status(cmd.Context())
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return printStatus(cmd.OutOrStdout(), st, t.client != nil, withColour)
		},
	}
	addCAFlags(cmd, g)
	addRemoteFlags(cmd, &rf)
	addOutputFlag(cmd, &rf)
	cmd.Flags().StringVar(&colour, "color", "auto", "colour the table: auto (on a terminal, unless NO_COLOR is set), always or never")
	return cmd
}

func newCRLCommand(g *globals) *cobra.Command {
	var (
		rf    remoteFlags
		scope string
		delta bool
		out   string
		asPEM bool
	)
	cmd := &cobra.Command{Use: "crl", Short: "Fetch the CRLs meshca serves"}
	fetch := &cobra.Command{
		Use:   "fetch --out FILE",
		Short: "Write a CRL that the running service serves",
		Long: `fetch writes one CRL (DER, or PEM with --pem) that the running meshca serve
builds: --scope gen-N for the CRL of intermediate generation N (default: the
active generation), root for the root's CRL when meshca holds the root key
(during a root rotation, the root intermediates are minted under; root-<hex>,
as 'meshca status' lists it, for the other root in force), root-external for
the root CRL taken from Vault, a file or a URL. --delta
fetches the delta CRL (RFC 5280 section 5.2.4) instead of the full one.

CRLs exist only while meshca serve runs: it builds them from the store. It
is reached through the admin socket of --dir/--config, or --admin-address.`,
		Example: `  meshca crl fetch --dir ./.meshca --out gen.crl
  openssl crl -inform DER -in gen.crl -noout -text
  meshca crl fetch --dir ./.meshca --scope root --pem --out root-crl.pem
  meshca crl fetch --dir ./.meshca --delta --out delta.crl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required (a file; - for stdout)")
			}
			t, err := openTarget(g, &rf)
			if err != nil {
				return err
			}
			defer t.Close()
			if t.client == nil {
				return fmt.Errorf("no meshca serve is running on the store %s: CRLs are built and served by meshca serve; start it (meshca serve --dir %s) and run crl fetch again", t.cfg.Store.Path, filepath.Dir(t.cfg.Store.Path))
			}
			if scope == "" {
				st, err := t.client.Status(cmd.Context())
				if err != nil {
					return err
				}
				scope = fmt.Sprintf("gen-%d", st.Generation)
			}
			der, err := t.client.CRL(cmd.Context(), scope, delta)
			if err != nil {
				return err
			}
			b := der
			if asPEM {
				b = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
			}
			if out == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			kind := "CRL"
			if delta {
				kind = "delta CRL"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Wrote the %s of %s (%d bytes) to %s\n", kind, scope, len(b), out)
			return nil
		},
	}
	addCAFlags(fetch, g)
	addRemoteFlags(fetch, &rf)
	fetch.Flags().StringVar(&scope, "scope", "", "gen-N, root, root-<hex> (the other root during a root rotation), root-external or root-external-<hex> (the other Vault root during a root rotation) (default: the active generation)")
	fetch.Flags().BoolVar(&delta, "delta", false, "fetch the delta CRL")
	fetch.Flags().StringVar(&out, "out", "", "file to write (- for stdout) (required)")
	fetch.Flags().BoolVar(&asPEM, "pem", false, "write PEM (X509 CRL) instead of DER")
	cmd.AddCommand(fetch)
	return cmd
}
