package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/admin"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/rootrotation"
)

func newRotateCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate meshca's root or intermediate, and follow, pause or advance a root rotation",
		Long: `rotate drives meshca's rotations through the admin socket of the running
'meshca serve' (the rotation controllers run inside it).

  meshca rotate root          start a root rotation A -> A+B -> B
  meshca rotate status        the rotation phases (also without a running serve)
  meshca rotate pause|resume  stop and continue a root rotation where it is
  meshca rotate advance       end the current wait of a root rotation now
  meshca rotate intermediate  mint, verify and activate a new intermediate now`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newRotateRootCommand(g), newRotateStatusCommand(g), newRotateIntermediateCommand(g))
	for _, op := range []struct{ name, short string }{
		{admin.RootOpPause, "Pause the root rotation where it is (journaled; survives restarts)"},
		{admin.RootOpResume, "Resume a paused root rotation"},
		{admin.RootOpAdvance, "End the root rotation's current wait now (wait-for-workloads or wait-out-ttl)"},
	} {
		cmd.AddCommand(newRotateOpCommand(g, op.name, op.short))
	}
	return cmd
}

func newRotateRootCommand(g *globals) *cobra.Command {
	var (
		req     admin.RootRotationRequest
		cfgFile string
		output  string
	)
	cmd := &cobra.Command{
		Use:   "root (--new-root-cert FILE --new-root-key FILE [--new-root-pq-key FILE] | --new-root-config FILE)",
		Short: "Start an orchestrated root rotation to a new root (A -> A+B -> B)",
		Long: `root starts a root rotation from the roots in force (A) to a new root (B), in
the five phases of Istio's root rotation; 'meshca serve' drives them, one
after the other, journaled in its store so that a restart resumes:

  1 publish-both-roots   root-cert.pem in the cacerts Secret becomes A's bytes
                         with B's appended (istiod accepts a bundle that grows
                         by appending), and the istio-ca-root-cert ConfigMaps,
                         the ClusterTrustBundles and the last element of the
                         Istio endpoint's chain carry both roots
  2 wait-for-workloads   until every unexpired workload certificate was issued
                         with both roots (counted from meshca's issuance
                         records), at least --workloads-min-wait, at most
                         --workloads-max-wait (default: half the default
                         certificate TTL plus the minimum)
  3 switch-intermediate  a new intermediate under B becomes the signer
  4 wait-out-ttl         until no unexpired leaf under A's intermediates is
                         left, at most --ttl-max-wait (default
                         issuance.maxCertTTL)
  5 remove-old-root      the bundles become B alone; root-cert.pem becomes B's
                         bytes, a part of the A+B bundle

Name B as files that the server can read (paths are made absolute here):
--new-root-cert and --new-root-key, and --new-root-pq-key for a Catalyst root;
or as a file with a root: section like meshca.yaml's (--new-root-config), for
instance a second Vault mount or issuer. meshca checks B completely before it
records anything: it parses, is a self-signed CA that may sign certificates
and CRLs, is valid now, its key matches, it suits intermediate.profile and it
is not a root in force.

Follow it with 'meshca rotate status' or 'meshca status'; pause, resume, or
end a wait early with 'meshca rotate pause|resume|advance'. When it is done,
update root: in the configuration to name B (meshca keeps using B until then,
and says so). The rotation needs a running 'meshca serve' on --dir/--config.`,
		Example: `  # to the root of another 'meshca init' folder (Catalyst, as init's default)
  meshca rotate root --dir ./.meshca --new-root-cert ./new/root-cert.pem --new-root-key ./new/root-key.pem \
      --new-root-pq-key ./new/root-pq-key.pem
  meshca rotate root --config /etc/meshca/meshca.yaml --new-root-cert /etc/meshca/b/root-cert.pem \
      --new-root-key /etc/meshca/b/root-key.pem --new-root-pq-key /etc/meshca/b/root-pq-key.pem \
      --workloads-max-wait 6h
  meshca rotate root --config meshca.yaml --new-root-config vault-b.yaml   # root: {source: vault, vault: {...}}
  meshca rotate advance --dir ./.meshca      # end the current wait now`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgFile != "" {
				rc, err := readRootSection(cfgFile)
				if err != nil {
					return err
				}
				req.NewRoot = &rc
			}
			for _, p := range []*string{&req.NewRootCert, &req.NewRootKey, &req.NewRootPQKey} {
				if *p != "" {
					abs, err := filepath.Abs(*p)
					if err != nil {
						return err
					}
					*p = abs
				}
			}
			if _, err := req.Check(); err != nil {
				return err
			}
			c, err := rotationClient(g)
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.StartRootRotation(cmd.Context(), req)
			if err != nil {
				return err
			}
			return printRotation(cmd.OutOrStdout(), info, output)
		},
	}
	addCAFlags(cmd, g)
	f := cmd.Flags()
	f.StringVar(&req.NewRootCert, "new-root-cert", "", "the new root's certificate (PEM), readable by meshca serve")
	f.StringVar(&req.NewRootKey, "new-root-key", "", "the new root's private key (PEM), readable by meshca serve")
	f.StringVar(&req.NewRootPQKey, "new-root-pq-key", "", "the ML-DSA key of a Catalyst new root (2.5.29.72)")
	f.StringVar(&cfgFile, "new-root-config", "", "a YAML file with a root: section naming the new root (file or vault)")
	f.StringVar(&req.WorkloadsMinWait, "workloads-min-wait", "", "phase 2 lasts at least this long (default rotation.root.workloadsMinWait, else 10m)")
	f.StringVar(&req.WorkloadsMaxWait, "workloads-max-wait", "", "phase 2 lasts at most this long (default rotation.root.workloadsMaxWait, else issuance.defaultCertTTL/2 + the minimum)")
	f.StringVar(&req.TTLMaxWait, "ttl-max-wait", "", "phase 4 lasts at most this long (default rotation.root.ttlMaxWait, else issuance.maxCertTTL)")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// readRootSection reads the root: section of a YAML file as meshca.yaml's
// (defaults filled, relative paths taken from the file's directory).
func readRootSection(path string) (config.RootConfig, error) {
	// Its relative paths are resolved against its directory, which must
	// be absolute: meshca serve reads them, not this process.
	path, err := filepath.Abs(path)
	if err != nil {
		return config.RootConfig{}, fmt.Errorf("--new-root-config: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return config.RootConfig{}, fmt.Errorf("--new-root-config: %w", err)
	}
	var doc struct {
		Root *json.RawMessage `json:"root"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil || doc.Root == nil {
		return config.RootConfig{}, fmt.Errorf("--new-root-config %s has no root: section", path)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return config.RootConfig{}, fmt.Errorf("--new-root-config: %w", err)
	}
	return cfg.Root, nil
}

func newRotateOpCommand(g *globals, op, short string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   op,
		Short: short,
		Example: fmt.Sprintf(`  meshca rotate %s --dir ./.meshca
  meshca rotate %s --config /etc/meshca/meshca.yaml -o json`, op, op),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rotationClient(g)
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.RootRotationOp(cmd.Context(), op)
			if err != nil {
				return err
			}
			return printRotation(cmd.OutOrStdout(), info, output)
		},
	}
	addCAFlags(cmd, g)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newRotateIntermediateCommand(g *globals) *cobra.Command {
	var output, signer string
	cmd := &cobra.Command{
		Use:   "intermediate",
		Short: "Mint, verify and activate a new intermediate now",
		Long: `intermediate has the running meshca serve mint a new intermediate under the
root that currently mints, verify it with a throwaway leaf and activate it at
once; the Istio endpoint, cacerts, the trust bundles and the CRL issuers move
to it together. The previous intermediate stays published until its last leaf
expires plus intermediate.gracePeriod.

With --signer, it rotates the intermediate of a signer that has its own
(authentication.certSigners with intermediate.separate) instead: that
signer's leaves and CRL move to it; the default intermediate, cacerts and the
other signers are left alone. --signer cluster:<id> rotates the own
intermediate of a plug-in cluster (clusters with mode plug-in): that
cluster's cacerts Secret gets it, the other clusters are left alone.`,
		Example: `  meshca rotate intermediate --dir ./.meshca
  meshca rotate intermediate --dir ./.meshca --signer gateways
  meshca rotate intermediate --dir ./.meshca --signer cluster:east`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rotationClient(g)
			if err != nil {
				return err
			}
			defer c.Close()
			out, err := c.RotateIntermediate(cmd.Context(), signer)
			if err != nil {
				return err
			}
			if output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(out)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "generation %d active: %s, issued by %s, expires %s\n", out.Generation, out.Subject, out.Issuer, out.NotAfter.UTC().Format(time.RFC3339))
			return err
		},
	}
	addCAFlags(cmd, g)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&signer, "signer", "", "rotate the intermediate of this signer (authentication.certSigners with intermediate.separate), or of plug-in cluster <id> as cluster:<id>, instead of the default one")
	return cmd
}

func newRotateStatusCommand(g *globals) *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the rotation phases and the root rotation's journal",
		Long: `status shows each rotating CA's phase and the last root rotation's journal:
from the running meshca serve (its admin socket, or --admin-address), or
straight from the store when no serve runs on it.`,
		Example: `  meshca rotate status --dir ./.meshca
  meshca rotate status --config /etc/meshca/meshca.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := rf.json(); err != nil {
				return err
			}
			t, err := openTarget(g, &rf)
			if err != nil {
				return err
			}
			defer t.Close()
			var info admin.RotationInfo
			if t.client != nil {
				if info, err = t.client.Rotation(cmd.Context()); err != nil {
					return err
				}
			} else {
				if info, err = storedRotation(cmd.Context(), t.store); err != nil {
					return err
				}
			}
			return printRotation(cmd.OutOrStdout(), info, rf.output)
		},
	}
	addCAFlags(cmd, g)
	addRemoteFlags(cmd, &rf)
	addOutputFlag(cmd, &rf)
	return cmd
}

// rotationClient is the running meshca serve's admin socket: rotations
// are driven inside it.
func rotationClient(g *globals) (*admin.Client, error) {
	t, err := openTarget(g, &remoteFlags{})
	if err != nil {
		return nil, err
	}
	if t.client == nil {
		t.Close()
		return nil, errors.New("no meshca serve is running on this store: rotations are driven by meshca serve; start it and run this command again")
	}
	return t.client, nil
}

func printRotation(w io.Writer, info admin.RotationInfo, output string) error {
	switch output {
	case "json":
		return json.NewEncoder(w).Encode(info)
	case "table", "":
	default:
		return fmt.Errorf("--output %q: use table or json", output)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CA\tPHASE\tSINCE\tSTATE\tWAITING")
	for _, s := range info.Rotations {
		phase := s.Phase
		if s.PhaseCode > 0 {
			phase = fmt.Sprintf("%d/5 %s", s.PhaseCode, s.Phase)
		}
		state := "ok"
		switch {
		case s.Paused:
			state = "paused"
		case s.Stuck:
			state = "STUCK: " + s.Problem
		case s.Problem != "":
			state = "retrying: " + s.Problem
		}
		since := "-"
		if !s.Since.IsZero() {
			since = s.Since.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.CA, phase, since, state, oneLine(s.Waiting))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r := info.Root; r != nil {
		fmt.Fprintf(w, "\nroot rotation %s: %s -> %s\n", r.ID, strings.Join(r.OldRoots, ", "), r.NewRoot)
		for _, e := range r.History {
			line := fmt.Sprintf("  %s  %-8s %s", e.At.UTC().Format(time.RFC3339), e.Event, e.Phase)
			if e.By != "" && e.By != "controller" {
				line += " by " + e.By
			}
			if e.Detail != "" {
				line += ": " + e.Detail
			}
			fmt.Fprintln(w, oneLine(line))
		}
	}
	return nil
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// stoppedServe says why a rotation read from the store does not move.
const stoppedServe = "meshca serve is not running on this store: the rotation resumes when it starts"

// storedRotation is the root rotation as a stopped service's store
// journals it (meshca rotate status and meshca status without serve).
func storedRotation(ctx context.Context, st store.Store) (admin.RotationInfo, error) {
	var info admin.RotationInfo
	j, ok := st.(store.RootRotations)
	if !ok {
		return info, errors.New("this store keeps no root-rotation journal")
	}
	rec, err := j.GetRootRotation(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		info.Rotations = []rotation.Status{{CA: rotation.CARoot, Phase: "idle"}}
	case err != nil:
		return info, err
	default:
		info.Root = admin.JournalOf(rec)
		waiting := stoppedServe
		if !rootrotation.Phase(rec.Phase).InProgress() {
			waiting = "" // done: nothing resumes
		}
		info.Rotations = []rotation.Status{{CA: rotation.CARoot, Phase: rec.Phase, Since: rec.PhaseStartedAt, Paused: rec.Paused, Waiting: waiting}}
	}
	return info, nil
}

// fixedReporter reports a status read once.
type fixedReporter rotation.Status

func (f fixedReporter) RotationStatus() rotation.Status { return rotation.Status(f) }
