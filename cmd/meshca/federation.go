package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/trustbundle/federation"
)

func newFederationCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "federation",
		Short: "Federation with foreign SPIFFE trust domains (federation.trustDomains)",
		Long: `meshca serve polls the SPIFFE bundle endpoints of the foreign trust domains
in federation.trustDomains and publishes their roots as ClusterTrustBundles
(label meshca.io/federated-trust-domain). These commands help hand the same
trust to Istio.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newFederationSnippetCommand(g))
	return cmd
}

// caCertificate is one entry of Istio's meshConfig.caCertificates
// (MeshConfig.CertificateData): pem or spiffeBundleUrl, for trustDomains.
type caCertificate struct {
	PEM             string   `json:"pem,omitempty"`
	SpiffeBundleURL string   `json:"spiffeBundleUrl,omitempty"`
	TrustDomains    []string `json:"trustDomains"`
}

func newFederationSnippetCommand(g *globals) *cobra.Command {
	var inline bool
	cmd := &cobra.Command{
		Use:   "snippet",
		Short: "Print Istio's meshConfig.caCertificates for the federated trust domains",
		Long: `snippet prints the meshConfig.caCertificates block that makes Istio trust the
foreign trust domains of federation.trustDomains: one entry per trust
domain, with its spiffeBundleUrl (istiod fetches and refreshes the bundle
itself) and trustDomains: [<trust domain>], so that the foreign roots
verify only that trust domain's SPIFFE IDs.

With --pem the entries inline the roots of the last bundle meshca serve
fetched (kept in federation.stateDir) instead; they do not follow a
foreign rotation until the snippet is applied again. Use --pem for an
https_spiffe endpoint: istiod fetches a spiffeBundleUrl with Web PKI roots
and cannot authenticate an endpoint that presents an X.509-SVID.

It only reads the configuration and federation.stateDir, so it works
while meshca serve runs. Put the block under meshConfig in the
IstioOperator, the istiod Helm values or the istio ConfigMap's mesh.`,
		Example: `  meshca federation snippet --config /etc/meshca/meshca.yaml
  meshca federation snippet --config /etc/meshca/meshca.yaml --pem > federation-values.yaml
  helm upgrade istiod istio/istiod -n istio-system --reuse-values -f federation-values.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			return writeSnippet(cmd.OutOrStdout(), cfg.Federation, inline)
		},
	}
	addCAFlags(cmd, g)
	cmd.Flags().BoolVar(&inline, "pem", false, "inline the roots of the last fetched bundles (pem:) instead of spiffeBundleUrl")
	return cmd
}

// writeSnippet writes the caCertificates YAML for fc's trust domains.
func writeSnippet(w io.Writer, fc config.FederationConfig, inline bool) error {
	if !fc.Enabled() {
		return errors.New("no foreign trust domain is configured: add federation.trustDomains to the configuration (see deploy/examples/meshca.yaml)")
	}
	var (
		entries  []caCertificate
		comments []string
		missing  []string
		spiffe   []string
	)
	for _, t := range fc.TrustDomains {
		e := caCertificate{TrustDomains: []string{t.TrustDomain}}
		if !inline {
			e.SpiffeBundleURL = t.BundleEndpointURL
			if t.Profile == config.FederationProfileSPIFFE {
				spiffe = append(spiffe, t.TrustDomain)
			}
			entries = append(entries, e)
			continue
		}
		td, err := identity.TrustDomain(t.TrustDomain)
		if err != nil {
			return err
		}
		s, err := federation.ReadSnapshot(fc.StateDir, td)
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (%v)", t.TrustDomain, err))
			continue
		}
		e.PEM = string(root.EncodePEM(s.Bundle.X509Authorities()...))
		seq, _ := s.Bundle.SequenceNumber()
		comments = append(comments, fmt.Sprintf("# %s: %d roots, sequence %d, fetched %s", t.TrustDomain,
			len(s.Bundle.X509Authorities()), seq, s.FetchedAt.UTC().Format(time.RFC3339)))
		entries = append(entries, e)
	}
	if len(missing) > 0 {
		return fmt.Errorf("no bundle has been fetched yet for %s in federation.stateDir %s: start meshca serve with this configuration and let it fetch them, or leave out --pem",
			strings.Join(missing, ", "), fc.StateDir)
	}
	b, err := yaml.Marshal(map[string]any{"meshConfig": map[string]any{"caCertificates": entries}})
	if err != nil {
		return err
	}
	var head strings.Builder
	head.WriteString("# Istio meshConfig.caCertificates for meshca's federated trust domains (meshca federation snippet)\n")
	for _, c := range comments {
		head.WriteString(c + "\n")
	}
	if len(spiffe) > 0 {
		fmt.Fprintf(&head, "# WARNING: %s serve https_spiffe; istiod fetches spiffeBundleUrl with Web PKI roots only: use --pem for them\n", strings.Join(spiffe, ", "))
	}
	_, err = io.WriteString(w, head.String()+string(b))
	return err
}
