package publish

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	certificatesv1beta1 "k8s.io/api/certificates/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
)

// Layout of meshca's ClusterTrustBundles for a signer such as
// meshca.io/workload (signer-linked bundles are named after the signer, see
// https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/#cluster-trust-bundles):
//
//   - meshca.io:workload:roots holds every active root, for mounts by name;
//   - during a rotation (more than one root) also one bundle per root,
//     meshca.io:workload:root-<first 16 hex of its SHA-256>;
//   - all carry LabelTrustBundle=<signer's name part> (here "workload"), so
//     that {signerName, labelSelector} matches exactly the active roots
//     while bundles come and go;
//   - meshca.io:workload:roots also carries the post-quantum trust anchors
//     in the annotation AnnotationPQAnchors (absent for a classical CA).
//
// Per-root bundles of roots no longer active are deleted.

// BundleSigners are the signers whose ClusterTrustBundles meshca
// publishes under cfg: the configured signer names and, with istiodBundle,
// istiod's; none when ClusterTrustBundles are off.
func BundleSigners(cfg config.ClusterTrustBundlesConfig) []string {
	if !cfg.On() {
		return nil
	}
	out := slices.Clone(cfg.SignerNames)
	if cfg.IstiodBundle {
		out = append(out, IstiodSignerName)
	}
	return out
}

// BundleName is the signer-linked bundle that holds every root of signer.
func BundleName(signer string) string { return bundlePrefix(signer) + ":roots" }

// RootBundleName is the per-root bundle of a root with the given SHA-256
// fingerprint (hex) during a rotation.
func RootBundleName(signer, sha256Hex string) string {
	return bundlePrefix(signer) + ":root-" + sha256Hex[:16]
}

// BundleLabelSelector selects signer's bundles, for a projected
// clusterTrustBundle volume with signerName.
func BundleLabelSelector(signer string) string {
	return LabelTrustBundle + "=" + bundleLabelValue(signer)
}

func bundlePrefix(signer string) string { return strings.ReplaceAll(signer, "/", ":") }

// bundleLabelValue is the part of signer after "/", cut to a valid label
// value.
func bundleLabelValue(signer string) string {
	_, v, _ := strings.Cut(signer, "/")
	v = strings.TrimRight(truncate(v, validation.LabelValueMaxLength), "-_.")
	return v
}

// bundle is a ClusterTrustBundle independent of its API version.
type bundle struct {
	name, signer, pem string
	labels            map[string]string
	// annotations are the ones meshca sets (AnnotationPQAnchors) in a
	// desired bundle, and all of them in an existing one.
	annotations map[string]string
	uid         string
}

// group is what one {signerName, labelSelector} query of b selects by:
// its signer and its trust-bundle label.
func (b bundle) group() string { return b.signer + "\x00" + b.labels[LabelTrustBundle] }

// matches reports whether the existing bundle cur already is b: the same
// signer and roots, b's labels, and the post-quantum anchors annotation
// exactly when b has it, with b's value.
func (b bundle) matches(cur bundle) bool {
	have, haveOK := cur.annotations[AnnotationPQAnchors]
	want, wantOK := b.annotations[AnnotationPQAnchors]
	return cur.signer == b.signer && cur.pem == b.pem && hasLabels(cur.labels, b.labels) &&
		haveOK == wantOK && have == want
}

// bundleAPI reads meshca's bundles from the shared cache and writes them, for
// one served version of certificates.k8s.io.
type bundleAPI struct {
	version string
	list    func(context.Context) ([]bundle, error)
	apply   func(context.Context, bundle) error
	delete  func(context.Context, bundle) error
}

// runTrustBundles watches meshca's bundles of the discovered version
// through the shared cache until ctx ends.
func (p *Publisher) runTrustBundles(ctx context.Context) {
	var api *bundleAPI
	var obj client.Object
	switch p.ctbVersion {
	case "v1":
		api, obj = p.v1Bundles(), &certificatesv1.ClusterTrustBundle{}
	case "v1beta1":
		api, obj = p.v1beta1Bundles(), &certificatesv1beta1.ClusterTrustBundle{}
	default:
		return // none served (Discover said so)
	}
	reg, err := p.watch(ctx, obj, p.enqueueOn(keyTrustBundles))
	if err != nil {
		p.log.Error("cannot watch ClusterTrustBundles", "error", err)
		return
	}
	if !toolscache.WaitForNamedCacheSyncWithContext(ctx, reg.HasSynced) {
		return
	}
	p.ctb.Store(api)
	p.log.Info("publishing ClusterTrustBundles", "apiVersion", "certificates.k8s.io/"+p.ctbVersion)
	p.q().Add(keyTrustBundles)
	<-ctx.Done()
}

// desiredBundles lists the bundles st calls for.
func (p *Publisher) desiredBundles(st *state) []bundle {
	rootsPEM := string(st.rootsPEM)
	var pqAnnotations map[string]string
	if len(st.pqAnchors) > 0 {
		pqAnnotations = map[string]string{AnnotationPQAnchors: string(st.pqAnchors)}
	}
	var out []bundle
	for _, s := range p.signers {
		lbl := bundleLabels(s)
		out = append(out, bundle{name: BundleName(s), signer: s, labels: lbl, annotations: pqAnnotations, pem: rootsPEM})
		if len(st.roots) > 1 {
			for _, r := range st.roots {
				out = append(out, bundle{name: RootBundleName(s, fingerprint(r)), signer: s, labels: lbl, pem: string(root.EncodePEM(r))})
			}
		}
	}
	if p.istiodCTB {
		out = append(out, bundle{name: IstiodBundleName, signer: IstiodSignerName, labels: bundleLabels(IstiodSignerName), pem: rootsPEM})
	}
	federated, _ := p.federatedBundles()
	return append(out, federated...)
}

func bundleLabels(signer string) map[string]string {
	return map[string]string{LabelManagedBy: FieldManager, LabelTrustBundle: bundleLabelValue(signer)}
}

// syncTrustBundles applies the desired bundles, then deletes meshca's
// bundles that are no longer desired, of each group (signer and
// trust-bundle label: what one {signerName, labelSelector} query selects)
// whose applies all succeeded. Applying first keeps such a query a
// superset of the old or new roots at every moment; a failure in one
// group (istiod's bundle without the attest permission, a federated bundle
// the apiserver refuses) does not keep another group's old roots trusted.
func (p *Publisher) syncTrustBundles(ctx context.Context, st *state) error {
	api := p.ctb.Load()
	if api == nil {
		return nil // not discovered yet; discovery queues this key
	}
	existing, err := api.list(ctx)
	if err != nil {
		return err
	}
	byName := map[string]bundle{}
	for _, b := range existing {
		byName[b.name] = b
	}
	want := p.desiredBundles(st)
	_, keep := p.federatedBundles()
	wanted := map[string]bool{}
	failed := map[string]bool{} // groups (bundleGroup) with an apply that failed
	var errs []error
	for _, b := range want {
		wanted[b.name] = true
		object := "ClusterTrustBundle " + b.name
		if len(b.pem) > MaxObjectBytes {
			msg := fmt.Sprintf("ClusterTrustBundle %s would hold %d bytes of roots, over the %d-byte limit; meshca keeps the previous one", b.name, len(b.pem), MaxObjectBytes)
			ref := bundleRef(b.name, api.version)
			failed[b.group()] = true
			errs = append(errs, p.problems.raise(ctx, problem{rule: ReasonTrustBundleTooLarge, object: object,
				fingerprint: fmt.Sprint(len(b.pem)), ref: ref, message: msg}))
			continue
		}
		p.problems.clear(ctx, ReasonTrustBundleTooLarge, object)
		if cur, ok := byName[b.name]; ok && b.matches(cur) {
			continue
		}
		if err := api.apply(ctx, b); err != nil {
			p.metrics.failed(objectTrustBundle)
			failed[b.group()] = true
			errs = append(errs, fmt.Errorf("applying ClusterTrustBundle %s: %w", b.name, err))
			continue
		}
		p.metrics.wrote(objectTrustBundle, "apply")
		p.log.Info("published ClusterTrustBundle", "name", b.name, "signerName", b.signer)
	}
	for _, cur := range existing {
		if wanted[cur.name] || keep[cur.name] || cur.labels[LabelManagedBy] != FieldManager || failed[cur.group()] {
			continue
		}
		if err := api.delete(ctx, cur); err != nil && !apierrors.IsNotFound(err) {
			p.metrics.failed(objectTrustBundle)
			errs = append(errs, fmt.Errorf("deleting stale ClusterTrustBundle %s: %w", cur.name, err))
			continue
		}
		p.metrics.wrote(objectTrustBundle, "delete")
		p.log.Info("deleted stale ClusterTrustBundle", "name", cur.name)
	}
	if len(errs) == 0 {
		p.metrics.succeeded(objectTrustBundle, p.clock.Now())
	}
	return errors.Join(errs...)
}
