package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/issuer/admin"
)

func newRecordsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "records",
		Short: "Read issuance records from the store",
		Long: `records reads the durable issuance records: one per certificate meshca issued,
with the serial, the authenticated identity, validity, SHA-256 fingerprint,
profile, requester and the CA generation that signed it.

While 'meshca serve' runs it holds the store; records then reads through the
service's admin socket (server.adminSocket) and prints the same output.`,
	}
	var (
		asJSON bool
		rf     remoteFlags
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List issuance records",
		Example: `  meshca records list --dir ./.meshca
  meshca records list --dir ./.meshca -o json
  meshca records list --admin-address meshca.istio-system.svc:15443 --token-file token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			j, err := rf.json()
			if err != nil {
				return err
			}
			asJSON = asJSON || j
			st, err := openRecords(g, &rf)
			if err != nil {
				return err
			}
			defer st.Close()
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(w, "SERIAL\tIDENTITY\tNOT AFTER\tPROFILE\tGEN\tREQUESTER")
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			err = st.ListIssuances(cmd.Context(), func(r store.Issuance) bool {
				if asJSON {
					_ = enc.Encode(r)
				} else {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", r.Serial, r.Identity, r.NotAfter.UTC().Format(time.RFC3339), r.Profile, r.Generation, r.Requester)
				}
				return true
			})
			if err != nil {
				return err
			}
			return w.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line (same as -o json)")
	addRemoteFlags(list, &rf)
	addOutputFlag(list, &rf)
	var getOut string
	get := &cobra.Command{
		Use:     "get SERIAL",
		Aliases: []string{"show"},
		Short:   "Show one issuance record (JSON by default)",
		Example: `  meshca records get 3f2a... --dir ./.meshca
  meshca records show 3f2a... --dir ./.meshca -o table
  meshca records show "$(openssl x509 -in chain.pem -noout -serial | cut -d= -f2)" --dir ./.meshca`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if getOut != "json" && getOut != "table" {
				return fmt.Errorf("--output %q: use json or table", getOut)
			}
			// As revoke takes it: openssl's "01:A2:..." too.
			serial, err := crl.ParseSerial(args[0])
			if err != nil {
				return err
			}
			st, err := openRecords(g, &rf)
			if err != nil {
				return err
			}
			defer st.Close()
			rec, err := st.GetIssuance(cmd.Context(), serial)
			if err != nil {
				return fmt.Errorf("record %s: %w", args[0], err)
			}
			if getOut == "table" {
				return printIssuance(cmd.OutOrStdout(), rec)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(rec)
		},
	}
	for _, c := range []*cobra.Command{list, get} {
		addCAFlags(c, g)
	}
	addRemoteFlags(get, &rf)
	// JSON by default, as before -o existed here (scripts read it).
	get.Flags().StringVarP(&getOut, "output", "o", "json", "output format: json or table")
	cmd.AddCommand(list, get)
	return cmd
}

// serveClient is a client of the admin socket of the meshca serve that
// holds the store, once it is seen to answer.
func serveClient(cfg *config.Config) (*admin.Client, error) {
	c := admin.NewClient(cfg.Server.AdminSocket)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.Check(ctx)
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("store %s is held by a meshca serve whose admin socket %s only its own user may use: run this command as that user", cfg.Store.Path, cfg.Server.AdminSocket)
	}
	if err != nil {
		return nil, fmt.Errorf("store %s is locked by another meshca process, and no meshca serve answers on its admin socket %s: if another meshca command holds the store, wait for it and retry", cfg.Store.Path, cfg.Server.AdminSocket)
	}
	return c, nil
}

// recordReader is the store, or a running meshca serve that holds it.
type recordReader interface {
	GetIssuance(ctx context.Context, serial string) (store.Issuance, error)
	ListIssuances(ctx context.Context, fn func(store.Issuance) bool) error
	Close() error
}

// openRecords opens the store; while 'meshca serve' holds it, it reads
// through the service's admin socket instead (or --admin-address).
func openRecords(g *globals, rf *remoteFlags) (recordReader, error) {
	t, err := openTarget(g, rf)
	if err != nil {
		return nil, err
	}
	if t.client != nil {
		return t.client, nil
	}
	return t.store, nil
}

// printIssuance writes one issuance record as aligned fields.
func printIssuance(w io.Writer, r store.Issuance) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, f := range [][2]string{
		{"Serial", r.Serial},
		{"Identity", r.Identity},
		{"Not before", r.NotBefore.UTC().Format(time.RFC3339)},
		{"Not after", r.NotAfter.UTC().Format(time.RFC3339)},
		{"Profile", r.Profile},
		{"Generation", strconv.FormatUint(r.Generation, 10)},
		{"Requester", r.Requester},
		{"Issued at", r.IssuedAt.UTC().Format(time.RFC3339Nano)},
		{"SHA-256", r.Fingerprint},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], f[1])
	}
	return tw.Flush()
}
