package publish

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation/alert"
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

// Alerter is the alerting engine (rotation/alert.Engine) through which the
// Publisher raises and clears its problems.
type Alerter interface {
	Raise(ctx context.Context, a alert.Alert) error
	Clear(ctx context.Context, key alert.Key) error
	Firing() []store.AlertState
}

// problemKind is which gauge a problem counts in.
type problemKind int

const (
	kindConflict problemKind = iota // meshca_trustbundle_conflicts
	kindRefused                     // meshca_trustbundle_refused
)

// problemRules are the alert rules the Publisher raises, with the gauge
// and metric object each counts in.
var problemRules = map[string]struct {
	kind     problemKind
	object   string // metric object label
	severity alert.Severity
	action   string
}{
	ReasonForeignCACertsSecret: {kindConflict, objectCACerts, alert.Warning,
		"meshca leaves the Secret alone and keeps checking it; istiod keeps using what it holds."},
	ReasonCACertsTooLarge: {kindRefused, objectCACerts, alert.Critical,
		"meshca keeps the Secret as it is and retries whenever the content changes."},
	ReasonCRLTooLarge: {kindRefused, objectCRLCM, alert.Critical,
		"meshca keeps the previous CRL in the ConfigMaps and retries whenever the CRL changes."},
	ReasonTrustBundleTooLarge: {kindRefused, objectTrustBundle, alert.Critical,
		"meshca keeps the previous ClusterTrustBundle and retries whenever the roots change."},
}

// problem is a standing reason why an object is not in its desired state.
type problem struct {
	// rule is the Event reason, which is also the alert's rule.
	rule string
	// object names the object in the alert (meshca's names only).
	object string
	// fingerprint identifies this occurrence (the foreign object's
	// resourceVersion, the refused content's size): a new one is reported
	// again.
	fingerprint string
	// ref is the object the Warning Event is written on.
	ref     corev1.ObjectReference
	message string
}

// problems raises and clears the Publisher's problems as alerts (the
// engine decides what is a new occurrence), writes one Warning Event per
// occurrence and keeps the gauges equal to the firing alerts' count.
type problems struct {
	alerts  Alerter
	metrics *metrics
	events  *eventWriter
	log     *slog.Logger
}

func (ps *problems) gauges() {
	conflicts, refused := map[string]int{}, map[string]int{}
	for _, a := range ps.alerts.Firing() {
		r, ok := problemRules[a.Rule]
		switch {
		case !ok:
		case r.kind == kindConflict:
			conflicts[r.object]++
		default:
			refused[r.object]++
		}
	}
	for _, o := range allObjects {
		ps.metrics.conflicts.WithLabelValues(o).Set(float64(conflicts[o]))
		ps.metrics.refused.WithLabelValues(o, reasonTooLarge).Set(float64(refused[o]))
	}
}

// raise raises p's alert and, unless this occurrence was already
// reported, writes a Warning Event on p.ref. An error means the alert or
// the Event was not recorded; the caller retries and raise tries again.
func (ps *problems) raise(ctx context.Context, p problem) error {
	r := problemRules[p.rule]
	err := ps.alerts.Raise(ctx, alert.Alert{
		Rule: p.rule, Object: p.object, Severity: r.severity,
		Summary: p.message, Action: r.action, Fingerprint: p.fingerprint,
		Announce: func() error {
			ps.gauges() // before the Event, so that who sees the Event sees the gauge
			return ps.events.warn(ctx, p.ref, p.rule, p.message)
		},
	})
	ps.gauges()
	return err
}

// clear ends p's alert, if it fires.
func (ps *problems) clear(ctx context.Context, rule, object string) {
	if err := ps.alerts.Clear(ctx, alert.KeyOf(rule, object)); err != nil {
		ps.log.Warn("clearing an alert failed; cleared again at the next reconcile", "alert", rule, "object", object, "error", err)
	}
	ps.gauges()
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
