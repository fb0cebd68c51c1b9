package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store/storeopen"
	"github.com/meshca/meshca/rotation/rootrotation"
)

// globals are the flags every command shares.
type globals struct {
	dir       string
	config    string
	logLevel  string
	logFormat string
}

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "meshca",
		Short: "Certificate authority and certificate lifecycle for the Istio service mesh",
		Long: `meshca issues and rotates the workload certificates of an Istio mesh.

It runs an intermediate CA under your enterprise root (files or HashiCorp
Vault's PKI engine; the intermediate key never leaves meshca's key store),
serves istio.v1.auth.IstioCertificateService to istio-agent and ztunnel,
publishes the mesh roots, CRLs and Istio's cacerts Secret into Kubernetes,
and keeps a durable, audited record of every issuance. Certificates are
hybrid post-quantum by default: a classical chain that Envoy verifies today,
carrying ML-DSA alternative signatures for PQ-aware verifiers.

Every command that needs the CA reads either a directory laid out by
'meshca init' (--dir, default ./.meshca) or a full configuration file
(--config, see deploy/examples/meshca.yaml). Flags override the file.`,
		Example: `  # A development CA and a running service, no cluster needed
  meshca init --dir ./.meshca
  meshca serve --dir ./.meshca --listen 127.0.0.1:15012

  # Sign a workload CSR offline and read the result
  meshca sign --dir ./.meshca --csr workload.csr --identity spiffe://cluster.local/ns/default/sa/app > chain.pem
  meshca inspect chain.pem`,
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn or error (default from config, else info)")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "", "log format: json or text (default from config, else json)")
	root.AddCommand(
		newInitCommand(g),
		newServeCommand(g),
		newSignCommand(g),
		newInspectCommand(),
		newVerifyCommand(g),
		newCACertsCommand(g),
		newRecordsCommand(g),
		newRevokeCommand(g),
		newRotateCommand(g),
		newRevocationsCommand(g),
		newCRLCommand(g),
		newStatusCommand(g),
	)
	root.AddCommand(newFederationCommand(g))
	root.AddCommand(newAuditCommand())
	return root
}

// addCAFlags adds --dir and --config to a command that needs the CA.
func addCAFlags(cmd *cobra.Command, g *globals) {
	cmd.Flags().StringVar(&g.dir, "dir", config.DefaultDir, "meshca directory created by 'meshca init' (used when --config is not given)")
	cmd.Flags().StringVar(&g.config, "config", "", "configuration file (YAML); see deploy/examples/meshca.yaml")
}

// loadConfig reads --config, or DIR/meshca.yaml, or the --dir defaults.
func (g *globals) loadConfig() (*config.Config, error) {
	var (
		cfg *config.Config
		err error
	)
	switch {
	case g.config != "":
		cfg, err = config.Load(g.config)
	default:
		if p := filepath.Join(g.dir, dirConfigFile); fileExists(p) {
			cfg, err = config.Load(p)
		} else {
			cfg = config.Defaults(g.dir)
		}
	}
	if err != nil {
		return nil, err
	}
	if g.logLevel != "" {
		cfg.Log.Level = g.logLevel
	}
	if g.logFormat != "" {
		cfg.Log.Format = g.logFormat
	}
	return cfg, nil
}

// explainNoStore adds what to do to the error of a command that needs an
// existing CA and found no store (storeopen.ErrNoStore): a mistyped --dir
// or the wrong working directory, or no 'meshca init' yet.
func (g *globals) explainNoStore(err error) error {
	if !errors.Is(err, storeopen.ErrNoStore) {
		return err
	}
	if g.config != "" {
		return fmt.Errorf("%w\ncheck store.path in %s; a CA whose root is in Vault or in root.file.cacertsDir gets its store at its first 'meshca serve'", err, g.config)
	}
	var found []string
	for _, n := range []string{config.RootCertFile, config.RootKeyFile, config.KeysDir, dirConfigFile} {
		if fileExists(filepath.Join(g.dir, n)) {
			found = append(found, n)
		}
	}
	if len(found) > 0 {
		// A CA whose store is missing (lost, or store.path on a volume
		// not mounted): init --force would delete its keys.
		return fmt.Errorf("%w\n%s holds a CA's files (%s) but not its store: check store.path (in %s if it has one) and that its volume is mounted, or restore the store from a backup; do not run 'meshca init' there, which would replace the CA's keys",
			err, g.dir, strings.Join(found, ", "), filepath.Join(g.dir, dirConfigFile))
	}
	return fmt.Errorf("%w\nthere is no CA in %s: pass --dir (or --config) naming the CA, or create a development CA with 'meshca init --dir %s'", err, g.dir, g.dir)
}

// explainReadOnly adds what to do to the error of authority.OpenReadOnly
// (meshca sign and cacerts without a running serve): no store, or no
// usable generation because a root rotation moved the intermediate to a
// root the configuration does not name yet.
func (g *globals) explainReadOnly(ctx context.Context, cfg *config.Config, err error) error {
	if !errors.Is(err, authority.ErrNoActiveGeneration) {
		return g.explainNoStore(err)
	}
	st, serr := storeopen.OpenExisting(ctx, cfg.Store, nil)
	if serr != nil {
		return err
	}
	defer st.Close()
	if hint := rootrotation.OfflineHint(ctx, st, cfg.Root); hint != "" {
		return fmt.Errorf("%w: %s", authority.ErrNoActiveGeneration, hint)
	}
	return err
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// newLogger returns the slog logger for cfg, writing to w.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
