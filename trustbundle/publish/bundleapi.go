package publish

import (
	"context"

	certificatesv1 "k8s.io/api/certificates/v1"
	certificatesv1beta1 "k8s.io/api/certificates/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	certv1ac "k8s.io/client-go/applyconfigurations/certificates/v1"
	certv1beta1ac "k8s.io/client-go/applyconfigurations/certificates/v1beta1"
)

// The two adapters below differ only in their Go types; both write with
// server-side apply, forcing, because meshca owns every bundle it names. An
// apply without annotations drops the ones meshca applied before (the
// post-quantum anchors of a CA that no longer has any) and keeps others'.

func (p *Publisher) v1Bundles() *bundleAPI {
	client := p.client.CertificatesV1().ClusterTrustBundles()
	return &bundleAPI{
		version: "v1",
		list: func(ctx context.Context) ([]bundle, error) {
			var l certificatesv1.ClusterTrustBundleList
			if err := p.cache.List(ctx, &l); err != nil {
				return nil, err
			}
			out := make([]bundle, 0, len(l.Items))
			for i := range l.Items {
				out = append(out, fromV1(&l.Items[i]))
			}
			return out, nil
		},
		apply: func(ctx context.Context, b bundle) error {
			ac := certv1ac.ClusterTrustBundle(b.name).WithLabels(b.labels).
				WithSpec(certv1ac.ClusterTrustBundleSpec().WithSignerName(b.signer).WithTrustBundle(b.pem))
			if len(b.annotations) > 0 {
				ac.WithAnnotations(b.annotations)
			}
			_, err := client.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
			return err
		},
		delete: func(ctx context.Context, b bundle) error {
			return client.Delete(ctx, b.name, deleteExactly(b))
		},
	}
}

func (p *Publisher) v1beta1Bundles() *bundleAPI {
	client := p.client.CertificatesV1beta1().ClusterTrustBundles()
	return &bundleAPI{
		version: "v1beta1",
		list: func(ctx context.Context) ([]bundle, error) {
			var l certificatesv1beta1.ClusterTrustBundleList
			if err := p.cache.List(ctx, &l); err != nil {
				return nil, err
			}
			out := make([]bundle, 0, len(l.Items))
			for i := range l.Items {
				out = append(out, fromV1beta1(&l.Items[i]))
			}
			return out, nil
		},
		apply: func(ctx context.Context, b bundle) error {
			ac := certv1beta1ac.ClusterTrustBundle(b.name).WithLabels(b.labels).
				WithSpec(certv1beta1ac.ClusterTrustBundleSpec().WithSignerName(b.signer).WithTrustBundle(b.pem))
			if len(b.annotations) > 0 {
				ac.WithAnnotations(b.annotations)
			}
			_, err := client.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
			return err
		},
		delete: func(ctx context.Context, b bundle) error {
			return client.Delete(ctx, b.name, deleteExactly(b))
		},
	}
}

func fromV1(o *certificatesv1.ClusterTrustBundle) bundle {
	return bundle{name: o.Name, signer: o.Spec.SignerName, pem: o.Spec.TrustBundle, labels: o.Labels, annotations: o.Annotations, uid: string(o.UID)}
}

func fromV1beta1(o *certificatesv1beta1.ClusterTrustBundle) bundle {
	return bundle{name: o.Name, signer: o.Spec.SignerName, pem: o.Spec.TrustBundle, labels: o.Labels, annotations: o.Annotations, uid: string(o.UID)}
}

// deleteExactly deletes the object meshca saw, not a namesake created since.
func deleteExactly(b bundle) metav1.DeleteOptions {
	uid := types.UID(b.uid)
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
}

func bundleRef(name, version string) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "ClusterTrustBundle", APIVersion: "certificates.k8s.io/" + version, Name: name}
}
