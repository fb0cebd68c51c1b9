package store

import (
	"context"
	"fmt"
	"time"
)

// MaxAlertKeyBytes bounds an alert key. Keys are built by meshca from its
// own rule names and object names, never from a caller's input.
const MaxAlertKeyBytes = 1024

// Alert statuses.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// AlertState is the durable state of one alert, so that a restarted meshca
// neither announces a firing alert again nor forgets one that was firing.
type AlertState struct {
	// Key identifies the alert: its rule and the object it is about.
	Key    string `json:"key"`
	Rule   string `json:"rule"`
	Object string `json:"object"`
	// Severity is "warning" or "critical".
	Severity string `json:"severity"`
	// Summary says what is wrong; Action what meshca does about it.
	Summary string `json:"summary"`
	Action  string `json:"action,omitempty"`
	// Expires is when the object concerned expires, if it does.
	Expires time.Time `json:"expires,omitzero"`
	// Fingerprint identifies one occurrence of the problem: a raise with
	// another fingerprint is a new occurrence and is announced again.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Status is AlertFiring or AlertResolved.
	Status   string    `json:"status"`
	StartsAt time.Time `json:"startsAt"`
	EndsAt   time.Time `json:"endsAt,omitzero"`
	// NotifiedAt is when the last firing or repeat notification was made.
	NotifiedAt time.Time `json:"notifiedAt,omitzero"`
	// Pending is the notification ("fire", "repeat", "resolved") that is
	// not yet delivered; it is delivered again after a restart.
	Pending string `json:"pending,omitempty"`
	// Seq numbers the notifications of this alert.
	Seq uint64 `json:"seq"`
}

// Validate checks what every backend requires of a record.
func (a AlertState) Validate() error {
	switch {
	case a.Key == "":
		return fmt.Errorf("alert state: empty key")
	case len(a.Key) > MaxAlertKeyBytes:
		return fmt.Errorf("alert state: key of %d bytes is over %d", len(a.Key), MaxAlertKeyBytes)
	case a.Status != AlertFiring && a.Status != AlertResolved:
		return fmt.Errorf("alert state %s: status %q is not %s or %s", a.Key, a.Status, AlertFiring, AlertResolved)
	}
	return nil
}

// AlertStates keeps the alerting engine's state. Every write returns only
// after it is durable.
type AlertStates interface {
	// GetAlertState returns the state of key or ErrNotFound.
	GetAlertState(ctx context.Context, key string) (AlertState, error)
	// PutAlertState stores s under s.Key, replacing any previous state; an
	// invalid s (AlertState.Validate) is refused and changes nothing.
	PutAlertState(ctx context.Context, s AlertState) error
	// ListAlertStates returns every state in key order.
	ListAlertStates(ctx context.Context) ([]AlertState, error)
	// DeleteAlertState removes key; deleting a missing key is not an error.
	DeleteAlertState(ctx context.Context, key string) error
}
