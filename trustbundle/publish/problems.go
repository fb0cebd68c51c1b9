package publish

import (
	"context"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/utils/clock"
)

// Event reasons meshca reports on the objects it publishes.
const (
	// ReasonForeignCACertsSecret: a cacerts Secret that meshca did not
	// create is in the way; meshca leaves it alone.
	ReasonForeignCACertsSecret = "ForeignCACertsSecret"
	// ReasonCACertsSecretTakenOver: meshca replaced such a Secret because
	// takeOwnership is set.
	ReasonCACertsSecretTakenOver = "CACertsSecretTakenOver"
	// ReasonCACertsTooLarge: the cacerts content is over 1 MiB.
	ReasonCACertsTooLarge = "CACertsTooLarge"
	// ReasonCRLTooLarge: the CRL does not fit a ConfigMap (1 MiB).
	ReasonCRLTooLarge = "CRLTooLarge"
	// ReasonTrustBundleTooLarge: the roots do not fit a ClusterTrustBundle.
	ReasonTrustBundleTooLarge = "TrustBundleTooLarge"
)

// eventComponent is the source.component of meshca's Events.
const eventComponent = "meshca"

// problemKind is which gauge a problem counts in.
type problemKind int

const (
	kindConflict problemKind = iota // meshca_trustbundle_conflicts
	kindRefused                     // meshca_trustbundle_refused
)

// problem is a standing reason why an object is not in its desired state.
type problem struct {
	kind   problemKind
	object string // metric object label
	// fingerprint identifies this occurrence (the foreign object's
	// resourceVersion, the refused content's size): a new one is reported
	// again.
	fingerprint string
	reported    bool
}

// problems tracks standing problems, keeps the gauges equal to their count
// and reports each occurrence once as a Warning Event.
type problems struct {
	mu      sync.Mutex
	open    map[string]*problem // by object key
	metrics *metrics
	events  *eventWriter
}

func (ps *problems) gauges() {
	conflicts, refused := map[string]int{}, map[string]int{}
	for _, p := range ps.open {
		if p.kind == kindConflict {
			conflicts[p.object]++
		} else {
			refused[p.object]++
		}
	}
	for _, o := range allObjects {
		ps.metrics.conflicts.WithLabelValues(o).Set(float64(conflicts[o]))
		ps.metrics.refused.WithLabelValues(o, reasonTooLarge).Set(float64(refused[o]))
	}
}

// raise records the problem at key and, unless this occurrence was already
// reported, writes an Event on ref. An error means the Event was not
// written; the caller retries and raise tries again.
func (ps *problems) raise(ctx context.Context, key string, p problem, ref corev1.ObjectReference, reason, message string) error {
	ps.mu.Lock()
	if old, ok := ps.open[key]; ok && old.fingerprint == p.fingerprint && old.kind == p.kind {
		reported := old.reported
		ps.mu.Unlock()
		if reported {
			return nil
		}
	} else {
		ps.open[key] = &p
		ps.gauges()
		ps.mu.Unlock()
	}
	if err := ps.events.warn(ctx, ref, reason, message); err != nil {
		return err
	}
	ps.mu.Lock()
	if cur, ok := ps.open[key]; ok && cur.fingerprint == p.fingerprint {
		cur.reported = true
	}
	ps.mu.Unlock()
	return nil
}

// clear ends the problem at key, if any, and reports whether there was one.
func (ps *problems) clear(key string) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if _, ok := ps.open[key]; !ok {
		return false
	}
	delete(ps.open, key)
	ps.gauges()
	return true
}

// eventWriter writes core/v1 Events directly (no broadcaster goroutines),
// stamped with the injected clock.
type eventWriter struct {
	client typedcorev1.EventsGetter
	clock  clock.PassiveClock
}

func (w *eventWriter) warn(ctx context.Context, ref corev1.ObjectReference, reason, message string) error {
	return w.write(ctx, ref, corev1.EventTypeWarning, reason, message)
}

func (w *eventWriter) normal(ctx context.Context, ref corev1.ObjectReference, reason, message string) error {
	return w.write(ctx, ref, corev1.EventTypeNormal, reason, message)
}

func (w *eventWriter) write(ctx context.Context, ref corev1.ObjectReference, eventType, reason, message string) error {
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault // Events about cluster-scoped objects
	}
	now := metav1.NewTime(w.clock.Now())
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: eventNamePrefix(ref.Name), Namespace: ns},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             truncate(message, 1024),
		Type:                eventType,
		Source:              corev1.EventSource{Component: eventComponent},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "meshca.io/trustbundle",
		ReportingInstance:   eventComponent,
	}
	if _, err := w.client.Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("writing %s Event on %s %s: %w", reason, ref.Kind, ref.Name, err)
	}
	return nil
}

// eventNamePrefix turns an object name into a valid Event name prefix
// (ClusterTrustBundle names hold ':').
func eventNamePrefix(name string) string {
	s := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, strings.ToLower(name))
	return truncate(s, 200) + "."
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func secretRef(ns, name string) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "Secret", APIVersion: "v1", Namespace: ns, Name: name}
}

func configMapRef(ns, name string) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: ns, Name: name}
}
