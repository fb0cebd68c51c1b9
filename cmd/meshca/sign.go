package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/store/storeopen"
	"github.com/meshca/meshca/issuer/admin"
)

func newSignCommand(g *globals) *cobra.Command {
	var (
		csrPath string
		idFlag  string
		ttl     config.Duration
		prof    string
	)
	cmd := &cobra.Command{
		Use:   "sign",
		Short: "Sign a workload CSR offline and print the chain in Istio's order",
		Long: `sign issues one workload certificate without a running service, for operators.

The identity is given with --identity and is NEVER read from the CSR: the CSR
must carry exactly that SPIFFE ID as its only URI SAN, and only its public key
is used. The same policy as the service applies (no DNS/IP/email SANs, no CN,
no CA requests, TTL at most issuance.maxCertTTL).

--profile chooses the certificate profile (default issuance.profile). It
must be one the CA's profile (intermediate.profile) issues: a catalyst CA
issues catalyst (ML-DSA alternative signature) or classical leaves; a
composite CA composite leaves; an mldsa CA pure ML-DSA leaves.

The chain is printed as PEM on stdout in Istio's order: the leaf, each
intermediate, then every active root. The issuance is recorded in the store
before anything is printed. While 'meshca serve' holds the same store, sign
asks the running service through its admin socket (server.adminSocket): the
same policy, record and audit, with the requester taken from the socket.

Offline, sign opens the CA read-only: it signs with the active intermediate
of the store and never mints or activates one. When there is none that is
good to sign with (none yet, expired, past intermediate.activateThreshold),
it fails and says to run 'meshca serve', which mints and activates one.`,
		Example: `  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout app.key \
    -subj / -addext "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/app" -out app.csr
  meshca sign --dir ./.meshca --csr app.csr --identity spiffe://cluster.local/ns/default/sa/app --ttl 12h > app-chain.pem
  meshca sign --dir ./.meshca --csr app.csr --identity spiffe://cluster.local/ns/default/sa/app --profile classical > app-chain.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := identity.Parse(idFlag)
			if err != nil {
				return fmt.Errorf("--identity: %w", err)
			}
			if err := admin.CheckSignTTL(ttl.Duration); err != nil {
				return fmt.Errorf("--ttl: %w", err)
			}
			var leafProfile profile.Name
			if prof != "" {
				if leafProfile, err = profile.Parse(prof); err != nil {
					return fmt.Errorf("--profile: %w", err)
				}
			}
			csr, err := readInput(cmd.InOrStdin(), csrPath)
			if err != nil {
				return fmt.Errorf("--csr: %w", err)
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			td, err := identity.TrustDomain(cfg.TrustDomain)
			if err != nil {
				return err
			}
			if err := identity.CheckWorkload(id, td); err != nil {
				return fmt.Errorf("--identity: %w", err)
			}
			// A running meshca serve signs, records and audits through
			// its own authority.
			remote := admin.SignRequest{CSR: csr, Identity: id.String(), TTL: ttl.Duration.String(), Profile: prof}
			if c, ok := runningServe(cfg, false); ok {
				return signRemote(cmd, c, remote)
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log.Level, cfg.Log.Format)
			rt, err := authority.OpenReadOnly(cmd.Context(), cfg, log)
			if errors.Is(err, storeopen.ErrLocked) {
				c, err := serveClient(cfg)
				if err != nil {
					return err
				}
				return signRemote(cmd, c, remote)
			}
			if err != nil {
				return g.explainReadOnly(cmd.Context(), cfg, err)
			}
			defer rt.Close()
			res, err := rt.Authority.Sign(cmd.Context(), authority.Request{
				CSR: csr, Identity: id.URL(), TTL: ttl.Duration, Requester: "cli:" + currentUser(), Profile: leafProfile,
			})
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), authority.ChainPEM(res.Chain))
			return err
		},
	}
	addCAFlags(cmd, g)
	cmd.Flags().StringVar(&csrPath, "csr", "", "PEM or DER CSR file, or - for stdin (required)")
	cmd.Flags().StringVar(&idFlag, "identity", "", "SPIFFE ID to issue to, e.g. spiffe://cluster.local/ns/default/sa/app (required)")
	cmd.Flags().Var(&ttl, "ttl", "certificate lifetime (default issuance.defaultCertTTL, 24h)")
	cmd.Flags().Lookup("ttl").DefValue = "" // not "(default 0s)" after the real default
	cmd.Flags().StringVar(&prof, "profile", "", fmt.Sprintf("certificate profile: one of %v that the CA issues (default issuance.profile)", profile.All))
	_ = cmd.MarkFlagRequired("csr")
	_ = cmd.MarkFlagRequired("identity")
	return cmd
}

// signRemote signs through the admin socket of the meshca serve that
// holds the store and prints what the offline path prints.
func signRemote(cmd *cobra.Command, c *admin.Client, req admin.SignRequest) error {
	defer c.Close()
	chain, err := c.Sign(cmd.Context(), req)
	if err != nil {
		return err
	}
	_, err = io.WriteString(cmd.OutOrStdout(), authority.ChainPEM(chain))
	return err
}

func readInput(stdin io.Reader, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(stdin, 1<<20))
	}
	return os.ReadFile(path)
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid:%d", os.Getuid())
}
