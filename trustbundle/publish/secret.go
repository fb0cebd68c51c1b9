package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/trustbundle/cacerts"
)

// secretKeys are the Istio keys meshca writes (Istio docs, "Plug in CA
// Certificates").
var secretKeys = []string{cacerts.KeyCACert, cacerts.KeyCAKey, cacerts.KeyCertChain, cacerts.KeyRootCert, cacerts.KeyCRL}

// syncSecret makes the cacerts Secret hold st, unless it belongs to someone
// else and takeOwnership is off. root-cert.pem follows the byte-append rule
// against the bytes the Secret holds now, read live (not from the cache) so
// that the rule holds even right after a previous write.
func (p *Publisher) syncSecret(ctx context.Context, st *state) error {
	if st.files == nil {
		return nil // no key: meshca is not istiod's plug-in CA
	}
	object := "Secret " + p.namespace + "/" + SecretName
	live, err := p.client.CoreV1().Secrets(p.namespace).Get(ctx, SecretName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		p.metrics.failed(objectCACerts)
		return fmt.Errorf("reading Secret %s/%s: %w", p.namespace, SecretName, err)
	}

	takeOver := live != nil && !ownedByMeshca(live)
	if takeOver && !p.takeOwner {
		ref := secretRef(p.namespace, SecretName)
		ref.UID, ref.ResourceVersion = live.UID, live.ResourceVersion
		msg := fmt.Sprintf("Secret %s/%s is not managed by meshca (%s) and %s; meshca leaves it alone. "+
			"Delete it, or set trustBundle.takeOwnership: true to let meshca replace it.",
			p.namespace, SecretName, managersOf(live), describeCACerts(live.Data))
		p.log.Warn("foreign cacerts Secret; not overwriting", "namespace", p.namespace, "managers", managersOf(live))
		return p.problems.raise(ctx, problem{
			rule: ReasonForeignCACertsSecret, object: object,
			fingerprint: string(live.UID) + "/" + live.ResourceVersion, ref: ref, message: msg,
		})
	}
	p.problems.clear(ctx, ReasonForeignCACertsSecret, object)

	data := maps.Clone(st.files)
	var old []byte
	if live != nil {
		old = live.Data[cacerts.KeyRootCert]
	}
	data[cacerts.KeyRootCert] = publishedRoots(old, st.roots)
	if size := dataSize(data); size > MaxObjectBytes {
		msg := fmt.Sprintf("the cacerts content is %d bytes, over the %d-byte Secret limit (the CRL is %d bytes); "+
			"meshca keeps the Secret as it is. Shorten the CRL: drop the entries of certificates that have expired.",
			size, MaxObjectBytes, len(st.crl))
		return p.problems.raise(ctx, problem{rule: ReasonCACertsTooLarge, object: object, fingerprint: contentHash(data),
			ref: secretRef(p.namespace, SecretName), message: msg})
	}
	p.problems.clear(ctx, ReasonCACertsTooLarge, object)

	if live != nil && !takeOver && secretMatches(live, data) {
		p.metrics.succeeded(objectCACerts, p.clock.Now())
		return nil
	}
	ac := corev1ac.Secret(SecretName, p.namespace).
		WithLabels(map[string]string{LabelManagedBy: FieldManager}).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
	if _, err := p.client.CoreV1().Secrets(p.namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		p.metrics.failed(objectCACerts)
		return fmt.Errorf("applying Secret %s/%s: %w", p.namespace, SecretName, err)
	}
	p.metrics.wrote(objectCACerts, "apply")
	p.metrics.succeeded(objectCACerts, p.clock.Now())
	p.log.Info("published cacerts Secret", "namespace", p.namespace, "created", live == nil,
		"roots", len(st.roots), "crl", len(st.crl) > 0)
	if takeOver {
		msg := fmt.Sprintf("meshca replaced Secret %s/%s, previously managed by %s, because trustBundle.takeOwnership is set",
			p.namespace, SecretName, managersOf(live))
		if err := p.problems.events.normal(ctx, secretRef(p.namespace, SecretName), ReasonCACertsSecretTakenOver, msg); err != nil {
			p.log.Warn("could not record the takeover Event", "error", err)
		}
	}
	return nil
}

// ownedByMeshca reports whether meshca created or manages s: it carries
// meshca's managed-by label or meshca is one of its field managers.
func ownedByMeshca(s *corev1.Secret) bool {
	if s.Labels[LabelManagedBy] == FieldManager {
		return true
	}
	for _, mf := range s.ManagedFields {
		if mf.Manager == FieldManager {
			return true
		}
	}
	return false
}

// managersOf names the object's field managers for messages.
func managersOf(s *corev1.Secret) string {
	var names []string
	for _, mf := range s.ManagedFields {
		if !slices.Contains(names, mf.Manager) {
			names = append(names, mf.Manager)
		}
	}
	if len(names) == 0 {
		return "no field manager recorded"
	}
	return "field managers " + strings.Join(names, ", ")
}

// describeCACerts says whether a foreign Secret holds a usable Istio CA.
func describeCACerts(data map[string][]byte) string {
	for _, k := range []string{cacerts.KeyCACert, cacerts.KeyCertChain, cacerts.KeyRootCert} {
		if _, err := root.ParseCertificates(data[k]); err != nil {
			return fmt.Sprintf("it is malformed (%s: %v)", k, err)
		}
	}
	if len(bytes.TrimSpace(data[cacerts.KeyCAKey])) == 0 {
		return fmt.Sprintf("it is malformed (%s is missing)", cacerts.KeyCAKey)
	}
	certs, _ := root.ParseCertificates(data[cacerts.KeyCACert])
	return fmt.Sprintf("it holds another CA (%s)", certs[0].Subject)
}

// secretMatches reports whether s already holds exactly data in the Istio
// keys, with meshca's label.
func secretMatches(s *corev1.Secret, data map[string][]byte) bool {
	if s.Labels[LabelManagedBy] != FieldManager || (s.Type != "" && s.Type != corev1.SecretTypeOpaque) {
		return false
	}
	for _, k := range secretKeys {
		got, has := s.Data[k]
		want, wants := data[k]
		if has != wants || !bytes.Equal(got, want) {
			return false
		}
	}
	return true
}

func dataSize(data map[string][]byte) int {
	n := 0
	for _, v := range data {
		n += len(v)
	}
	return n
}

func contentHash(data map[string][]byte) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(h, "%s=%d:", k, len(data[k]))
		h.Write(data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}
