package authority_test

import (
	"context"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/meshca/meshca/ca/authority"
)

// webPKIOnly lists, with the reason, the zlint findings that encode
// CA/Browser Forum Baseline Requirements for publicly-trusted certificates
// and do not apply to a private mesh CA. Any other warning or error fails.
var webPKIOnly = map[string]string{
	"e_sub_cert_cert_policy_empty":                   "CABF BR 7.1.6: subscriber certificates must assert a CABF policy OID; a mesh CA asserts none",
	"e_sub_cert_certificate_policies_missing":        "CABF BR 7.1.2.3: certificatePolicies; see above",
	"e_sub_cert_aia_missing":                         "CABF BR 7.1.2.3: AIA; mesh clients get the chain in the response and the roots from the mesh bundle",
	"e_sub_cert_aia_does_not_contain_ocsp_url":       "CABF BR 7.1.2.3: OCSP; the mesh revokes through CRLs (Istio ca-crl.pem)",
	"w_sub_cert_aia_does_not_contain_issuing_ca_url": "CABF BR 7.1.2.3: AIA caIssuers; see e_sub_cert_aia_missing",
	// SPIFFE X.509-SVID identifies a workload by exactly one URI SAN; CABF
	// forbids URI SANs in TLS server certificates, RFC 5280 does not.
	"e_ext_san_uniform_resource_identifier_present": "CABF BR 7.1.2.7.12: URI SANs (SPIFFE IDs are URIs)",
	// Mozilla Root Store Policy §5.1 admits only RSA and ECDSA keys; an
	// Ed25519 SPKI is correct per RFC 8410 and accepted from mesh workloads.
	"e_algorithm_identifier_improper_encoding": "Mozilla policy 5.1: Ed25519 subject keys",
	// The intermediate.
	"e_ca_country_name_missing":                    "CABF BR 7.1.4.3: CA subjects must carry a country; a mesh intermediate need not",
	"e_sub_ca_certificate_policies_missing":        "CABF BR 7.1.2.10: certificatePolicies on subordinate CAs",
	"e_sub_ca_crl_distribution_points_missing":     "CABF BR 7.1.2.10: CRLDP on subordinate CAs; Istio reads the root CRL from ca-crl.pem",
	"w_sub_ca_aia_missing":                         "CABF BR 7.1.2.10: AIA on subordinate CAs",
	"w_sub_ca_aia_does_not_contain_issuing_ca_url": "CABF BR 7.1.2.10: AIA caIssuers on subordinate CAs",
}

func lintDER(t *testing.T, der []byte) map[string]*lint.LintResult {
	t.Helper()
	c, err := zx509.ParseCertificate(der)
	require.NoError(t, err)
	return zlint.LintCertificate(c).Results
}

func TestZLint_LeafAndIntermediateHaveNoErrorsOrWarnings(t *testing.T) {
	ca := newTestCA(t)
	for _, kind := range []string{"rsa2048", "p256", "ed25519"} {
		res, err := ca.rt.Authority.Sign(context.Background(), authority.Request{
			CSR: istioCSR(t, newKey(t, kind), workload), Identity: spiffe(t, workload),
		})
		require.NoError(t, err)
		certs := map[string][]byte{
			kind + " leaf": res.DER,
			"intermediate": ca.rt.Authority.Material().Bundle.Cert.Raw,
		}
		for what, der := range certs {
			var bad []string
			for name, r := range lintDER(t, der) {
				if r.Status != lint.Warn && r.Status != lint.Error && r.Status != lint.Fatal {
					continue
				}
				if _, ok := webPKIOnly[name]; ok {
					continue
				}
				bad = append(bad, name+" ("+r.Status.String()+": "+r.Details+")")
			}
			sort.Strings(bad)
			require.Empty(t, bad, "%s: zlint findings", what)
		}
	}
}
