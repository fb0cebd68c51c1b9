package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/inspect"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/issuer/admin"
)

func newRevokeCommand(g *globals) *cobra.Command {
	var (
		rf   remoteFlags
		body admin.RevokeBody
		gen  uint64
		why  string
	)
	cmd := &cobra.Command{
		Use:   "revoke (--serial S | --identity ID | --generation N) --reason R",
		Short: "Revoke a certificate, every certificate of an identity, or an intermediate generation",
		Long: `revoke records a revocation durably; meshca lists it on its CRLs (RFC 5280)
and refuses the certificate as a client certificate from then on.

Name exactly one of:
  --serial S        one certificate, in hex as 'openssl x509 -noout -serial'
                    prints it (colons and upper case accepted); an unknown
                    serial is recorded too
  --identity ID     every unexpired certificate issued to a SPIFFE ID
  --generation N    a whole intermediate (a compromised CA generation; not
                    the active one: rotate first). It goes on the root's CRL
                    when meshca holds the root key.

--reason is an RFC 5280 section 5.3.1 reason, by name or number:
unspecified (0), keyCompromise (1), cACompromise (2), affiliationChanged (3),
superseded (4), cessationOfOperation (5), privilegeWithdrawn (9),
aACompromise (10). --invalidity-date (RFC 3339) says since when the key is
known or suspected to be compromised (RFC 5280 section 5.3.2).

Revoking twice is harmless: the original record is kept and printed.

Where it goes: while 'meshca serve' runs on the store, through its admin
socket (the CRLs are rebuilt within moments); with --admin-address, to a
remote meshca's admin listener; otherwise straight into the store. A bbolt
store's CRLs are rebuilt when meshca serve next starts; on PostgreSQL every
replica running elsewhere reads the revocation within seconds (the Lease's
retry period), refuses the certificate and lists it on its CRLs.`,
		Example: `  meshca revoke --dir ./.meshca --serial 4F:A3:C1:... --reason keyCompromise
  meshca revoke --dir ./.meshca --identity spiffe://cluster.local/ns/shop/sa/cart --reason keyCompromise --invalidity-date 2026-12-05T08:00:00Z
  meshca revoke --dir ./.meshca --generation 1 --reason superseded
  meshca revoke --admin-address meshca.istio-system.svc:15443 --token-file token --serial 4fa3c1 --reason 1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := rf.json()
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("generation") && gen == 0 {
				return errors.New("--generation 0: CA generations are numbered from 1; 'meshca status' lists them")
			}
			body.Generation = gen
			body.Reason = admin.ReasonField(why)
			req, err := body.Request()
			if err != nil {
				return err
			}
			t, err := openTarget(g, &rf)
			if err != nil {
				return err
			}
			defer t.Close()
			var (
				recs    []store.Revocation
				notices []string
			)
			if t.client != nil {
				recs, notices, err = t.client.RevokeWithNotices(cmd.Context(), body)
			} else {
				if _, ok := t.store.(crl.Backend); !ok {
					return fmt.Errorf("the store %s keeps no revocations", t.cfg.Store.Describe())
				}
				req.Requester = "cli:" + currentUser()
				recs, err = adminRevoker{r: crl.NewRevoker(t.store, clock.RealClock{}, runningLineages(t.cfg))}.Revoke(cmd.Context(), req)
				notices = offlineRevocationNotices(t.cfg, recs)
				if err == nil {
					// Audited like the offline 'meshca sign': on stderr.
					al := audit.New(newLogger(cmd.ErrOrStderr(), t.cfg.Log.Level, t.cfg.Log.Format))
					admin.AuditRevocations(cmd.Context(), al, req.Requester, req.Reason, recs)
				}
			}
			if err != nil {
				return err
			}
			if err := printRevocations(cmd.OutOrStdout(), recs, asJSON); err != nil {
				return err
			}
			noteAlreadyRevoked(cmd.ErrOrStderr(), recs, req.Reason)
			for _, n := range notices {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+n)
			}
			if t.client == nil && !asJSON && !allExisting(recs) {
				fmt.Fprintln(cmd.ErrOrStderr(), offlineRevokeNotice(t.cfg))
			}
			return nil
		},
	}
	addCAFlags(cmd, g)
	addRemoteFlags(cmd, &rf)
	addOutputFlag(cmd, &rf)
	cmd.Flags().StringVar(&body.Serial, "serial", "", "certificate serial number in hex")
	cmd.Flags().StringVar(&body.Identity, "identity", "", "SPIFFE ID whose unexpired certificates to revoke")
	cmd.Flags().Uint64Var(&gen, "generation", 0, "intermediate CA generation to revoke ('meshca status' lists them)")
	cmd.Flags().StringVar(&why, "reason", "", "RFC 5280 reason name or number, e.g. keyCompromise or 1 (required)")
	cmd.Flags().StringVar(&body.InvalidityDate, "invalidity-date", "", "RFC 3339 time since which the key is known or suspected compromised")
	_ = cmd.MarkFlagRequired("reason")
	cmd.MarkFlagsMutuallyExclusive("serial", "identity", "generation")
	cmd.MarkFlagsOneRequired("serial", "identity", "generation")
	return cmd
}

func newRevocationsCommand(g *globals) *cobra.Command {
	var (
		rf    remoteFlags
		since uint64
	)
	cmd := &cobra.Command{
		Use:   "revocations",
		Short: "Read the revocation records",
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List revocations in the order they were recorded",
		Long: `list prints every revocation record: its sequence number, serial, kind (leaf
or intermediate), CA generation, identity, reason, time and requester.
While 'meshca serve' runs it reads through the service's admin socket.`,
		Example: `  meshca revocations list --dir ./.meshca
  meshca revocations list --dir ./.meshca --since 41 -o json
  meshca revocations list --admin-address meshca.istio-system.svc:15443 --cert admin.pem --key admin.key`,
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
			var src admin.RevocationLister = t.client
			if t.client == nil {
				r, ok := t.store.(store.Revocations)
				if !ok {
					return errors.New("this store keeps no revocations")
				}
				src = r
			}
			w := newRevocationWriter(cmd.OutOrStdout(), asJSON)
			var werr error
			err = src.ListRevocations(cmd.Context(), since, func(r store.Revocation) bool {
				werr = w.write(r)
				return werr == nil
			})
			if err := errors.Join(err, werr); err != nil {
				return err
			}
			return w.flush()
		},
	}
	addCAFlags(list, g)
	addRemoteFlags(list, &rf)
	addOutputFlag(list, &rf)
	list.Flags().Uint64Var(&since, "since", 0, "only revocations with a sequence number above this")
	cmd.AddCommand(list)
	return cmd
}

// revocationWriter prints revocations as a table or JSON lines.
type revocationWriter struct {
	tw   *tabwriter.Writer
	enc  *json.Encoder
	head bool
}

func newRevocationWriter(out io.Writer, asJSON bool) *revocationWriter {
	if asJSON {
		return &revocationWriter{enc: json.NewEncoder(out)}
	}
	return &revocationWriter{tw: tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)}
}

func (w *revocationWriter) write(r store.Revocation) error {
	if w.enc != nil {
		if r.Existing {
			// Revoked before this request: said for scripts too.
			return w.enc.Encode(struct {
				store.Revocation
				AlreadyRevoked bool `json:"alreadyRevoked"`
			}{r, true})
		}
		return w.enc.Encode(r)
	}
	if !w.head {
		w.head = true
		fmt.Fprintln(w.tw, "SEQ\tSERIAL\tKIND\tGEN\tIDENTITY\tREASON\tREVOKED AT\tREQUESTER")
	}
	id := r.Identity
	if id == "" {
		id = "-"
		if !r.Known {
			id = "(unknown serial)"
		}
	}
	_, err := fmt.Fprintf(w.tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Seq, r.Serial, r.Kind, r.Generation, id, r.Reason,
		r.RevokedAt.UTC().Format(time.RFC3339), inspect.Printable(r.Requester))
	return err
}

func (w *revocationWriter) flush() error {
	if w.tw == nil {
		return nil
	}
	if !w.head {
		fmt.Fprintln(w.tw, "No revocations.")
	}
	return w.tw.Flush()
}

// noteAlreadyRevoked tells, on stderr, which of recs were revoked before
// this request (store.Revocation.Existing): their original records stand,
// with their own reason and time, since a revocation is final (RFC 5280
// section 5.3.1 has no way back but certificateHold, which meshca does
// not use).
func noteAlreadyRevoked(w io.Writer, recs []store.Revocation, asked store.Reason) {
	var old []store.Revocation
	for _, r := range recs {
		if r.Existing {
			old = append(old, r)
		}
	}
	switch {
	case len(old) == 0:
		return
	case len(old) == 1 && len(recs) == 1:
		r := old[0]
		fmt.Fprintf(w, "Serial %s was already revoked at %s (reason %s, by %s); a revocation is final, so nothing changed.\n",
			r.Serial, r.RevokedAt.UTC().Format(time.RFC3339), r.Reason, inspect.Printable(r.Requester))
		if r.Reason != asked {
			fmt.Fprintf(w, "The reason given now (%s) is not recorded: the CRLs keep %s.\n", asked, r.Reason)
		}
	default:
		fmt.Fprintf(w, "%d of these %d certificates were already revoked; their original records stand (a revocation is final), and nothing changed for them.\n", len(old), len(recs))
	}
}

func allExisting(recs []store.Revocation) bool {
	for _, r := range recs {
		if !r.Existing {
			return false
		}
	}
	return true
}

func printRevocations(out io.Writer, recs []store.Revocation, asJSON bool) error {
	w := newRevocationWriter(out, asJSON)
	for _, r := range recs {
		if err := w.write(r); err != nil {
			return err
		}
	}
	return w.flush()
}

// offlineRevocationNotices are the notices serve would give about recs
// (crl.Manager.Unlisted) that the configuration alone tells: an
// intermediate revoked under a root meshca holds no key of (Vault, or
// root.file.cacertsDir) is on no CRL meshca signs. (During a root
// rotation between Vault and a file root only serve can tell which root
// issued it.)
func offlineRevocationNotices(cfg *config.Config, recs []store.Revocation) []string {
	if cfg.Root.Source != config.RootSourceVault && cfg.Root.File.Minted() {
		return nil
	}
	var out []string
	for _, r := range recs {
		if r.Kind == store.KindIntermediate {
			out = append(out, crl.UnlistedNotice(r, clock.RealClock{}.Now()))
		}
	}
	return out
}

// offlineRevokeNotice says when a revocation recorded straight into the
// store reaches the CRLs.
func offlineRevokeNotice(cfg *config.Config) string {
	if cfg.Store.Type == config.StorePostgres {
		// Other hosts' replicas read the database (serve's followStore).
		return "Recorded in the database; every meshca serve on it reads it within seconds, refuses the certificate and lists it on its CRLs (a replica that is not running, when it starts)."
	}
	return "Recorded in the store; no meshca serve is running on it, so the CRLs will be rebuilt and published when meshca serve starts."
}
