package main

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/issuer/admin"
)

func newStatusCommand(g *globals) *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the CA's state: generations, store health, revocations and CRLs",
		Long: `status prints the active intermediate generation and its expiry, every CA
generation in the store, the store's health, the latest revocation and the
CRLs the running service serves (number, thisUpdate, nextUpdate).

While 'meshca serve' runs it asks the service through its admin socket;
against a stopped service it reads the store, and there are no CRLs to show
(meshca serve builds and serves them).`,
		Example: `  meshca status --dir ./.meshca
  meshca status --dir ./.meshca -o json
  meshca status --admin-address meshca.istio-system.svc:15443 --token-file token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := rf.json()
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
				st = admin.StoreStatus(cmd.Context(), storeState(t.cfg, t.store))
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return printStatus(cmd.OutOrStdout(), st, t.client != nil)
		},
	}
	addCAFlags(cmd, g)
	addRemoteFlags(cmd, &rf)
	addOutputFlag(cmd, &rf)
	return cmd
}

func printStatus(out io.Writer, st admin.Status, running bool) error {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	server := "running (answered through its admin endpoint)"
	if !running {
		server = "not running (read from the store)"
	}
	health := "healthy"
	if !st.Store.Healthy {
		health = "UNHEALTHY: " + st.Store.Error
	}
	fmt.Fprintf(tw, "server:\t%s\n", server)
	fmt.Fprintf(tw, "trust domain:\t%s\n", st.TrustDomain)
	fmt.Fprintf(tw, "active generation:\t%d (%s), intermediate %s, not after %s\n", st.Generation, st.Profile, st.IntermediateSubject, ts(st.IntermediateNotAfter))
	fmt.Fprintf(tw, "store:\t%s, %s\n", st.Store.Path, health)
	fmt.Fprintf(tw, "last revocation:\t%d\n", st.LastRevocationSeq)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nGENERATIONS")
	tw = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROFILE\tSOURCE\tSTATE\tNOT AFTER\tSUBJECT")
	for _, g := range st.Generations {
		state := "retired"
		switch {
		case g.Active:
			state = "active"
		case g.ActivatedAt.IsZero():
			state = "staged"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Profile, g.Source, state, ts(g.NotAfter), g.Subject)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nCRLS")
	if len(st.CRLs) == 0 {
		if running {
			fmt.Fprintln(out, "none served yet")
		} else {
			fmt.Fprintln(out, "none: meshca serve builds and serves the CRLs")
		}
		return nil
	}
	tw = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tKIND\tNUMBER\tTHIS UPDATE\tNEXT UPDATE\tBYTES")
	for _, c := range st.CRLs {
		kind := "full"
		if c.Delta {
			kind = "delta"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\n", c.Scope, kind, c.Number, ts(c.ThisUpdate), ts(c.NextUpdate), c.Size)
	}
	return tw.Flush()
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
active generation), root for the root's CRL when meshca holds the root key,
root-external for the root CRL taken from Vault, a file or a URL. --delta
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
			fmt.Fprintf(cmd.ErrOrStderr(), "Wrote the %s of %s (%d bytes) to %s\n", kind, scope, len(der), out)
			return nil
		},
	}
	addCAFlags(fetch, g)
	addRemoteFlags(fetch, &rf)
	fetch.Flags().StringVar(&scope, "scope", "", "gen-N, root or root-external (default: the active generation)")
	fetch.Flags().BoolVar(&delta, "delta", false, "fetch the delta CRL")
	fetch.Flags().StringVar(&out, "out", "", "file to write (- for stdout) (required)")
	fetch.Flags().BoolVar(&asPEM, "pem", false, "write PEM (X509 CRL) instead of DER")
	cmd.AddCommand(fetch)
	return cmd
}
