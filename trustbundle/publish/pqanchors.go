package publish

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshca/meshca/ca/pqc"
)

// Where meshca publishes its post-quantum trust anchors (issue 5): the keys
// a PQ-aware relying party trusts to verify the ML-DSA alternative chain
// (catalyst) or the composite or ML-DSA chain. Under a classical
// enterprise root that is meshca's own intermediate key, which no root
// certificate carries, so it must be distributed on its own.
const (
	// PQAnchorsConfigMapName is the ConfigMap in istiod's namespace that
	// holds the anchors under PQAnchorsConfigMapKey.
	PQAnchorsConfigMapName = "meshca-pq-trust-anchors"
	// PQAnchorsConfigMapKey is its key: "PUBLIC KEY" PEM blocks, the
	// content of meshca's pq-anchor.pem.
	PQAnchorsConfigMapKey = "pq-anchors.pem"
	// AnnotationPQAnchors carries the same PEM on meshca's signer-linked
	// ClusterTrustBundles (BundleName of each signer), next to the
	// classical roots they hold.
	AnnotationPQAnchors = "meshca.io/pq-trust-anchors"
)

// maxPQAnchorsBytes is what fits the annotation: Kubernetes limits an
// object's annotations, keys and values together, to 256 KiB.
const maxPQAnchorsBytes = 256<<10 - len(AnnotationPQAnchors)

// pqAnchorsLabels are the labels of the anchors ConfigMap. It is not an
// Istio ConfigMap, so it has no istio.io/config label.
var pqAnchorsLabels = map[string]string{LabelManagedBy: FieldManager}

// checkPQAnchors accepts one or more "PUBLIC KEY" PEM blocks, each an
// ML-DSA or composite SubjectPublicKeyInfo, and nothing else.
func checkPQAnchors(b []byte) error {
	if len(b) > maxPQAnchorsBytes {
		return fmt.Errorf("publish: Desired.PQAnchors is %d bytes, over the %d bytes an annotation can hold", len(b), maxPQAnchorsBytes)
	}
	rest := bytes.TrimSpace(b)
	n := 0
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return errors.New("publish: Desired.PQAnchors holds data that is not PEM")
		}
		n++
		if block.Type != "PUBLIC KEY" {
			return fmt.Errorf("publish: Desired.PQAnchors block %d is %q; only PUBLIC KEY blocks are allowed", n, block.Type)
		}
		if _, err := pqc.AnchorFromPublicKeyInfo(fmt.Sprintf("block %d", n), block.Bytes); err != nil {
			return fmt.Errorf("publish: Desired.PQAnchors: %w", err)
		}
		rest = bytes.TrimSpace(rest)
	}
	if n == 0 {
		return errors.New("publish: Desired.PQAnchors holds no PUBLIC KEY block")
	}
	return nil
}

// syncPQAnchors makes the anchors ConfigMap hold st.pqAnchors, or, when
// there are none (a classical CA), deletes the one meshca published before:
// only an object carrying meshca's label (the informer sees no other), and
// only the object seen (UID precondition).
func (p *Publisher) syncPQAnchors(ctx context.Context, st *state) error {
	if len(st.pqAnchors) > 0 {
		return p.syncConfigMap(ctx, p.namespace, PQAnchorsConfigMapName, PQAnchorsConfigMapKey, objectPQAnchorsCM, pqAnchorsLabels,
			func(string) string { return string(st.pqAnchors) })
	}
	cur, err := p.cachedConfigMap(ctx, p.namespace, PQAnchorsConfigMapName)
	if err != nil {
		return err
	}
	if cur == nil {
		p.metrics.succeeded(objectPQAnchorsCM, p.clock.Now())
		return nil
	}
	uid := types.UID(cur.UID)
	err = p.client.CoreV1().ConfigMaps(p.namespace).Delete(ctx, PQAnchorsConfigMapName,
		metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		p.metrics.failed(objectPQAnchorsCM)
		return fmt.Errorf("withdrawing ConfigMap %s/%s: %w", p.namespace, PQAnchorsConfigMapName, err)
	}
	p.metrics.wrote(objectPQAnchorsCM, "delete")
	p.metrics.succeeded(objectPQAnchorsCM, p.clock.Now())
	p.log.Info("withdrew the post-quantum trust anchors: the CA has none", "namespace", p.namespace, "name", PQAnchorsConfigMapName)
	return nil
}
