package publish

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshca/meshca/ca/root"
)

// Federated trust domains (SPIFFE Federation): the roots of each foreign
// trust domain meshca federates with are one ClusterTrustBundle without a
// signerName (so that it needs no "attest" permission and never mixes
// with a signer's bundles), named FederatedBundleName(td) and labelled
// LabelManagedBy=meshca and LabelFederatedTrustDomain=FederatedLabelValue(td).
// A pod mounts one by name, or selects them by label.

// LabelFederatedTrustDomain carries the foreign trust domain of a federated
// bundle.
const LabelFederatedTrustDomain = "meshca.io/federated-trust-domain"

// federatedPrefix starts every federated bundle's name.
const federatedPrefix = "meshca-federated"

// FederatedBundleName is the ClusterTrustBundle holding trust domain td's
// roots: "meshca-federated.<td>" when that is an object name (no "_", at
// most 253 bytes), else "meshca-federated-<first 16 hex of SHA-256(td)>".
func FederatedBundleName(td string) string {
	name := federatedPrefix + "." + td
	if len(validation.IsDNS1123Subdomain(name)) == 0 {
		return name
	}
	return federatedPrefix + "-" + shortHash(td, 16)
}

// FederatedLabelValue is the LabelFederatedTrustDomain value of td: td
// itself when it is a valid label value (at most 63 bytes), else
// "sha256-<first 40 hex of SHA-256(td)>".
func FederatedLabelValue(td string) string {
	if len(validation.IsValidLabelValue(td)) == 0 {
		return td
	}
	return "sha256-" + shortHash(td, 40)
}

func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// federatedState is what SetFederated asked for.
type federatedState struct {
	bundles []bundle
	// keep names the bundles of configured trust domains without roots yet
	// (no successful fetch since meshca started and none kept): whatever is
	// published for them stays.
	keep map[string]bool
}

// SetFederated replaces the federated trust domains: configured lists every
// one of meshca's configuration, roots the X.509 authorities of those with
// a bundle. Bundles of trust domains no longer configured are deleted; a
// configured one without roots keeps its bundle. It fails, changing
// nothing, when roots holds an unconfigured trust domain, no certificate,
// or a certificate that is not a CA. It does not wait for the writes.
func (p *Publisher) SetFederated(_ context.Context, configured []string, roots map[string][]*x509.Certificate) error {
	st := &federatedState{keep: map[string]bool{}}
	for td := range roots {
		if !slices.Contains(configured, td) {
			return fmt.Errorf("publish: roots of %q, which is not a configured federated trust domain", td)
		}
	}
	for _, td := range configured {
		certs, ok := roots[td]
		if !ok {
			st.keep[FederatedBundleName(td)] = true
			continue
		}
		if len(certs) == 0 {
			return fmt.Errorf("publish: no roots for federated trust domain %s", td)
		}
		for i, c := range certs {
			if c == nil || !c.BasicConstraintsValid || !c.IsCA {
				return fmt.Errorf("publish: root %d of federated trust domain %s is not a CA certificate; ClusterTrustBundles hold CA certificates only", i+1, td)
			}
		}
		st.bundles = append(st.bundles, bundle{
			name: FederatedBundleName(td),
			labels: map[string]string{
				LabelManagedBy:            FieldManager,
				LabelFederatedTrustDomain: FederatedLabelValue(td),
			},
			pem: string(root.EncodePEM(certs...)),
		})
	}
	p.federated.Store(st)
	p.q().Add(keyTrustBundles)
	return nil
}

// federatedBundles are the desired federated bundles and the names to
// keep as they are.
func (p *Publisher) federatedBundles() ([]bundle, map[string]bool) {
	st := p.federated.Load()
	if st == nil {
		return nil, nil
	}
	return st.bundles, st.keep
}
