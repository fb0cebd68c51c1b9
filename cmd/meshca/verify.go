package main

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/verify"
)

func newVerifyCommand(g *globals) *cobra.Command {
	var chainFile, rootsFile, anchorFile string
	var pq bool
	cmd := &cobra.Command{
		Use:   "verify --chain FILE [--roots FILE] [--pq]",
		Short: "Verify a certificate chain classically and, with --pq, post-quantum",
		Long: `verify checks a PEM chain (leaf first, as 'meshca sign' prints it) and prints
every check it makes; it exits non-zero when one fails.

Classical: each RSA/ECDSA/Ed25519 signature and crypto/x509 path validation
up to the trusted roots — the chain Envoy verifies.

Post-quantum (--pq): every ML-DSA alternative signature (Catalyst,
2.5.29.73/.74), composite ML-DSA signature (both components must verify) and
pure ML-DSA signature, up to a trusted post-quantum key: a trusted root's own
ML-DSA or composite key or its 2.5.29.72 alternative key, or the anchor in
--pq-anchor. Composite and mldsa chains have no classical signatures, so
verify them with --pq.

Trust comes only from --roots (default: the root-cert.pem of --dir/--config)
and --pq-anchor (default: the pq-anchor.pem meshca writes next to its store,
when present); roots inside the chain file are ignored. Under a classical
enterprise root, pq-anchor.pem (meshca's intermediate ML-DSA key) is the only
post-quantum anchor there is.`,
		Example: `  meshca sign --dir ./.meshca --csr app.csr --identity spiffe://cluster.local/ns/default/sa/app > chain.pem
  meshca verify --dir ./.meshca --chain chain.pem --pq
  meshca verify --chain chain.pem --roots root-cert.pem --pq --pq-anchor pq-anchor.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			chain, err := root.ReadCertificates(chainFile)
			if err != nil {
				return fmt.Errorf("--chain %w", err)
			}
			if rootsFile == "" || (pq && anchorFile == "") {
				cfg, err := g.loadConfig()
				if err != nil {
					return err
				}
				if rootsFile == "" {
					rootsFile = cfg.Root.File.RootCert
					if !cfg.Root.File.Minted() {
						rootsFile = filepath.Join(cfg.Root.File.CACertsDir, root.RootCertFile)
					}
				}
				if pq && anchorFile == "" && fileExists(authority.PQAnchorPath(cfg)) {
					anchorFile = authority.PQAnchorPath(cfg)
				}
			}
			roots, err := root.ReadCertificates(rootsFile)
			if err != nil {
				return fmt.Errorf("trusted roots (--roots) %w", err)
			}
			opts := verify.Options{Roots: roots, PQ: pq}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "chain:          %s (%d certificates)\n", chainFile, len(chain))
			fmt.Fprintf(out, "trusted roots:  %s (%d)\n", rootsFile, len(roots))
			if pq && anchorFile != "" {
				if opts.PQAnchors, err = readAnchors(anchorFile); err != nil {
					return fmt.Errorf("--pq-anchor %s: %w", anchorFile, err)
				}
				fmt.Fprintf(out, "pq anchors:     %s (%d)\n", anchorFile, len(opts.PQAnchors))
			}
			rep := verify.Chain(chain, opts)
			for _, c := range rep.Checks {
				switch {
				case c.Skipped != "":
					fmt.Fprintf(out, "skip  %s: %s\n", c.Name, c.Skipped)
				case c.Err != nil:
					fmt.Fprintf(out, "FAIL  %s: %v\n", c.Name, c.Err)
				default:
					fmt.Fprintf(out, "ok    %s\n", c.Name)
				}
			}
			if err := rep.Err(); err != nil {
				fmt.Fprintln(out, "verification FAILED")
				return fmt.Errorf("verification failed")
			}
			var what []string
			if rep.Classical {
				what = append(what, "classical chain")
			}
			if rep.PostQuantum {
				what = append(what, "post-quantum chain")
			}
			fmt.Fprintf(out, "verified: %s\n", strings.Join(what, " and "))
			return nil
		},
	}
	addCAFlags(cmd, g)
	cmd.Flags().StringVar(&chainFile, "chain", "", "PEM chain to verify, leaf first (required)")
	cmd.Flags().StringVar(&rootsFile, "roots", "", "PEM trusted roots (default: root-cert.pem of --dir or --config)")
	cmd.Flags().BoolVar(&pq, "pq", false, "also verify the post-quantum signatures up to a trusted post-quantum key")
	cmd.Flags().StringVar(&anchorFile, "pq-anchor", "", "PEM public key(s) trusted as post-quantum anchors (default: meshca's pq-anchor.pem when present)")
	_ = cmd.MarkFlagRequired("chain")
	return cmd
}

// readAnchors reads "PUBLIC KEY" PEM blocks as post-quantum trust anchors.
func readAnchors(path string) ([]pqc.TrustAnchor, error) {
	rest, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []pqc.TrustAnchor
	for {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		a, err := pqc.AnchorFromPublicKeyInfo(fmt.Sprintf("%s #%d", filepath.Base(path), len(out)+1), block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, errors.New("holds no PUBLIC KEY block")
	}
	return out, nil
}
