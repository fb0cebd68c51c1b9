package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/inspect"
	"github.com/meshca/meshca/ca/root"
)

// liveTailWait is how long verify waits before looking again at a last
// record that ends mid-line (meshca writes whole lines, but a reader can
// see one half written).
const liveTailWait = 500 * time.Millisecond

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check the tamper-evident audit file",
		Long: `With audit.file in the configuration, meshca serve appends every audit event
(issued, denied, revoked, admin calls) to a hash-chained file with
checkpoints signed by its intermediate; 'meshca audit verify' checks it.`,
		Example: `  meshca audit verify --roots root-cert.pem /var/lib/meshca/audit/audit.log`,
	}
	var rootsFile string
	var sealed bool
	var expectSeq uint64
	var signerCNs []string
	verify := &cobra.Command{
		Use:   "verify FILE [FILE...]",
		Short: "Verify an audit file (or a rotated series) end to end",
		Long: `verify checks the audit file that meshca serve writes with audit.file: every
record's seq follows the previous one and its prev is the SHA-256 of the
previous record's line, and every checkpoint's signature verifies with the
certificate it carries. Give a rotated series oldest first (the rotated
files sort by name: FILE.* then FILE); each file must link to the previous
one. It names the FIRST broken record (file, line, seq, what is wrong) and
exits non-zero.

What it can tell:
  - an edited, deleted, inserted or reordered line, and a record cut in the
    middle (a torn tail is accepted only where meshca's next start
    acknowledged it in a restart record);
  - a rewrite of the whole file up to a checkpoint, which cannot be
    re-signed without the intermediate's key: with --roots, the
    checkpoint's certificate must chain to one of those roots at the
    checkpoint's time (without --roots a forger's own key would pass).
    Every intermediate under those roots passes --roots, a plug-in
    cluster's too (its key is in that cluster's cacerts Secret):
    --signer-cn pins the checkpoint signer to meshca's
    intermediate.commonName.

What it cannot tell by itself: records cut off the END at a line boundary
leave a shorter, valid chain. --sealed requires the series to end with the
shutdown checkpoint meshca writes when it stops, and --expect-seq N a signed
checkpoint at or after a seq seen earlier (the metric
meshca_audit_file_checkpoint_sequence; records after the last checkpoint
are not signed, so they do not count). The
records after the last checkpoint are reported: only the hash chain
covers them until the next checkpoint.

It reads the files only and works while meshca serve writes them (the
last file then ends without a shutdown checkpoint; a last record seen half
written is read again after half a second).`,
		Example: `  meshca audit verify /var/lib/meshca/audit/audit.log
  # a rotated series, with the checkpoints' certificates checked against the root
  meshca audit verify --roots root-cert.pem /var/lib/meshca/audit/audit.log.* /var/lib/meshca/audit/audit.log
  # only meshca's own intermediate may have signed the checkpoints
  meshca audit verify --roots root-cert.pem --signer-cn "meshca intermediate" audit.log
  # the log of a stopped meshca must end with its shutdown checkpoint
  meshca audit verify --sealed --expect-seq 48213 audit.log`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			var roots []*x509.Certificate
			if rootsFile != "" {
				var err error
				if roots, err = root.ReadCertificates(rootsFile); err != nil {
					return fmt.Errorf("--roots %w", err)
				}
			}
			opts := audit.VerifyOptions{Roots: roots, Sealed: sealed, ExpectSeq: expectSeq, SignerCommonNames: signerCNs}
			rep := audit.Verify(files, opts)
			if rep.Problem != nil && rep.Problem.IncompleteTail {
				// A running meshca may be writing the last record: look
				// again once it has had the time to finish it.
				clock.RealClock{}.Sleep(liveTailWait)
				rep = audit.Verify(files, opts)
			}
			printAuditReport(cmd.OutOrStdout(), rep, len(roots) > 0)
			if err := rep.Err(); err != nil {
				return fmt.Errorf("audit log broken: %w", err)
			}
			return nil
		},
	}
	verify.Flags().StringVar(&rootsFile, "roots", "", "PEM file of trusted roots: every checkpoint's certificate must chain to one of them")
	verify.Flags().BoolVar(&sealed, "sealed", false, "require the series to end with meshca's shutdown checkpoint (the log of a stopped meshca)")
	verify.Flags().Uint64Var(&expectSeq, "expect-seq", 0, "require a signed checkpoint at or after this seq (meshca_audit_file_checkpoint_sequence seen earlier)")
	verify.Flags().StringArrayVar(&signerCNs, "signer-cn", nil, "subject common name a checkpoint's certificate must have (repeatable; meshca's intermediate.commonName): other intermediates under the same roots, such as a plug-in cluster's, are refused")
	cmd.AddCommand(verify)
	return cmd
}

func printAuditReport(w io.Writer, rep *audit.Report, rooted bool) {
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", inspect.Printable(n))
	}
	if rep.Problem != nil {
		fmt.Fprintf(w, "FAIL %s\n", inspect.Printable(rep.Problem.Error()))
		if rep.Records > 0 {
			fmt.Fprintf(w, "the %d records before it verify (seq %d..%d, %d checkpoints)\n", rep.Records, rep.FirstSeq, rep.LastSeq, rep.Checkpoints)
		}
		return
	}
	fmt.Fprintf(w, "OK %d file(s), %d records (seq %d..%d), %d signed checkpoint(s)\n", rep.Files, rep.Records, rep.FirstSeq, rep.LastSeq, rep.Checkpoints)
	if rep.Checkpoints > 0 {
		fmt.Fprintf(w, "last checkpoint: seq %d at %s\n", rep.LastCheckpointSeq, rep.LastCheckpointTime)
	}
	for _, s := range rep.Signers {
		fmt.Fprintf(w, "signed by: %s\n", inspect.Printable(s))
	}
	if rooted {
		fmt.Fprintln(w, "checkpoint certificates chain to --roots")
	} else {
		fmt.Fprintln(w, "checkpoint certificates NOT checked against a root (give --roots)")
	}
	switch {
	case rep.Sealed:
		fmt.Fprintln(w, "sealed: the series ends with meshca's shutdown checkpoint")
	case rep.Unsigned > 0:
		fmt.Fprintf(w, "not sealed: %d record(s) after the last checkpoint are covered by the hash chain only (meshca still running, or it stopped without its shutdown checkpoint)\n", rep.Unsigned)
	default:
		fmt.Fprintln(w, "not sealed: the series ends with an interval or rotate checkpoint")
	}
}
