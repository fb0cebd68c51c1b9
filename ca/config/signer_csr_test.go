package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

const csrBase = "kubernetes:\n  kubeconfig: /kubeconfig\n"

func TestCSRSignerConfig_DefaultsFromIssuance(t *testing.T) {
	c, err := config.Parse([]byte(csrBase + "issuance:\n  maxCertTTL: 48h\nsigners:\n  csr:\n    enabled: true\n    signerNames: [meshca.io/workload]\n    allowedRequesters: [system:serviceaccount:istio-system:istiod]\n"))
	require.NoError(t, err)
	require.Equal(t, 48*time.Hour, c.Signers.CSR.MaxDuration.Duration)
	require.Equal(t, c.Issuance.Profile, c.Signers.CSR.Profile)
	require.NotEmpty(t, c.Signers.CSR.Profile)

	d := config.Defaults(t.TempDir())
	d.Kubernetes.Kubeconfig = "/kubeconfig"
	d.Signers.CSR = config.CSRSignerConfig{Enabled: true, SignerNames: []string{"meshca.io/workload"},
		AllowedRequesters: []string{"system:serviceaccount:istio-system:istiod", "admin"}}
	d.Init()
	require.NoError(t, d.Validate())
}

func TestCSRSignerConfig_ValidateNamesKeyAndFix(t *testing.T) {
	tests := map[string]struct {
		csr  string
		want string
	}{
		"no signer names": {"allowedRequesters: [system:serviceaccount:istio-system:istiod]\n",
			"signers.csr.signerNames: must list the signer names meshca signs for: istiod's K8S_SIGNER, e.g. [meshca.io/workload]"},
		"no requesters": {"signerNames: [meshca.io/workload]\n",
			"signers.csr.allowedRequesters: must list the users that may request certificates (spec.username, exact match)"},
		"kubernetes.io signer": {"signerNames: [kubernetes.io/kube-apiserver-client]\nallowedRequesters: [u]\n",
			`signers.csr.signerNames[0]: "kubernetes.io/kube-apiserver-client" is reserved for Kubernetes' own signers`},
		"k8s.io subdomain signer": {"signerNames: [x.k8s.io/s]\nallowedRequesters: [u]\n",
			`signers.csr.signerNames[0]: "x.k8s.io/s" is reserved`},
		"signer without a path": {"signerNames: [meshca.io]\nallowedRequesters: [u]\n",
			`signers.csr.signerNames[0]: "meshca.io" is not a signer name; use <domain>/<name>`},
		"single-label domain": {"signerNames: [meshca/workload]\nallowedRequesters: [u]\n",
			`the domain "meshca" needs at least two labels`},
		"signer twice": {"signerNames: [a.io/x, a.io/x]\nallowedRequesters: [u]\n",
			`signers.csr.signerNames[1]: "a.io/x" is listed twice`},
		"group as requester": {"signerNames: [a.io/x]\nallowedRequesters: [system:serviceaccounts:istio-system]\n",
			`signers.csr.allowedRequesters[0]: "system:serviceaccounts:istio-system" is a group, not a user`},
		"wildcard requester": {"signerNames: [a.io/x]\nallowedRequesters: [\"system:serviceaccount:istio-system:*\"]\n",
			`wildcards are not supported`},
		"malformed ServiceAccount user": {"signerNames: [a.io/x]\nallowedRequesters: [\"system:serviceaccount:istiod\"]\n",
			`"system:serviceaccount:istiod" is not a ServiceAccount username; use system:serviceaccount:<namespace>:<name>`},
		"negative max duration": {"signerNames: [a.io/x]\nallowedRequesters: [u]\nmaxDuration: -1h\n",
			"signers.csr.maxDuration: must not be negative"},
		"unknown profile": {"signerNames: [a.io/x]\nallowedRequesters: [u]\nprofile: nope\n",
			`signers.csr.profile: leaf profile "nope" is not one of`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			csr := "    " + indent(tc.csr)
			c, err := config.Parse([]byte(csrBase + "signers:\n  csr:\n    enabled: true\n" + csr))
			require.NoError(t, err)
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
}

func TestCSRSignerConfig_DisabledIsNotValidated(t *testing.T) {
	d := config.Defaults(t.TempDir())
	d.Signers.CSR = config.CSRSignerConfig{SignerNames: []string{"kubernetes.io/x"}}
	d.Init()
	require.NoError(t, d.Validate())
}

func indent(s string) string {
	out := ""
	for i, r := range s {
		out += string(r)
		if r == '\n' && i < len(s)-1 {
			out += "    "
		}
	}
	return out
}

// The commented signers.csr block of the example, uncommented, is a valid
// configuration (with a cluster).
func TestExampleConfig_CSRBlockValidates(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "meshca.yaml"))
	require.NoError(t, err)
	_, block, ok := strings.Cut(string(b), "  # csr:\n")
	require.True(t, ok, "the example has a commented signers.csr block")
	yaml := "signers:\n  csr:\n"
	for _, l := range strings.Split(block, "\n") {
		rest, ok := strings.CutPrefix(l, "  #   ")
		if !ok {
			break // the end of the block
		}
		if !strings.HasPrefix(rest, "#") {
			yaml += "    " + rest + "\n"
		}
	}
	d := config.Defaults(t.TempDir())
	parsed, err := config.Parse([]byte(yaml))
	require.NoError(t, err, yaml)
	d.Signers.CSR = parsed.Signers.CSR
	d.Kubernetes.Kubeconfig = "/kubeconfig"
	d.Init()
	require.NoError(t, d.Validate())
	require.True(t, d.Signers.CSR.Enabled)
	require.Equal(t, []string{"meshca.io/workload"}, d.Signers.CSR.SignerNames)
	require.Equal(t, []string{"system:serviceaccount:istio-system:istiod"}, d.Signers.CSR.AllowedRequesters)
	require.Equal(t, 24*time.Hour, d.Signers.CSR.MaxDuration.Duration)
}
