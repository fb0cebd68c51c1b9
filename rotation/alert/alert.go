// Package alert is meshca's alerting engine. Rules elsewhere in meshca
// Raise an Alert while a problem stands and Clear it when the problem is
// gone; the engine turns that into notifications: one when the alert
// fires, a repeat at a configurable interval while it keeps firing, and one
// when it is resolved. Each alert is identified by a Key made of meshca's
// rule name and the name of the object concerned (meshca's own names, never
// a caller's input). The state of every alert is kept in the store
// (store.AlertStates) so that a restart neither announces a firing alert
// again nor forgets one, and a notification that was not delivered before
// a crash is delivered after the restart.
//
// Notifications go to sinks: a Slack incoming webhook (Block Kit messages)
// and a generic webhook that receives Alertmanager's webhook JSON. Each
// sink has a bounded queue and its own worker that spaces and retries the
// deliveries, so a slow or dead sink never blocks the engine or the rules.
package alert

import (
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// Severity of an alert.
type Severity string

// Severities.
const (
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Key identifies an alert: a rule and the object it is about.
type Key string

// KeyOf is the key of rule's alert about object.
func KeyOf(rule, object string) Key { return Key(rule + "/" + object) }

// Alert is one standing problem as a rule sees it.
type Alert struct {
	// Rule is meshca's name of the check that raised it (CamelCase, e.g.
	// CRLTooLarge); it is the alert's name in every sink.
	Rule string
	// Object names the object concerned, in meshca's own names (e.g.
	// "Secret istio-system/cacerts"), never from a caller's input.
	Object   string
	Severity Severity
	// Summary says what is wrong; Action what meshca is doing about it.
	Summary string
	Action  string
	// Expires is when the object expires, when that is what the alert is
	// about; zero otherwise.
	Expires time.Time
	// Fingerprint identifies this occurrence: raising the alert with
	// another fingerprint while it fires announces it again.
	Fingerprint string
	// Announce, when set, is called once for each new occurrence, inside
	// Raise, until it succeeds (a Kubernetes Event, say). Its error is
	// Raise's, and the next Raise of the same occurrence calls it again.
	Announce func() error
}

// Key is a's key.
func (a Alert) Key() Key { return KeyOf(a.Rule, a.Object) }

// validate reports a rule's mistake.
func (a Alert) validate() error {
	switch {
	case a.Rule == "" || a.Object == "":
		return errors.New("alert: Rule and Object must be set")
	case a.Severity != Warning && a.Severity != Critical:
		return fmt.Errorf("alert %s: severity %q is not %s or %s", a.Key(), a.Severity, Warning, Critical)
	case len(a.Key()) > store.MaxAlertKeyBytes:
		return fmt.Errorf("alert %.64s...: key over %d bytes", a.Key(), store.MaxAlertKeyBytes)
	}
	return nil
}

// Kind is what a notification says about its alert.
type Kind string

// Notification kinds.
const (
	KindFire     Kind = "fire"
	KindRepeat   Kind = "repeat"
	KindResolved Kind = "resolved"
)

// Notification is one message to the sinks.
type Notification struct {
	Kind Kind
	// State is the alert's state when the notification was made.
	State store.AlertState
	// At is when it was made.
	At time.Time
}
