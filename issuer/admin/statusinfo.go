package admin

import (
	"cmp"
	"context"
	"encoding/hex"
	"slices"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/inventory"
)

// States of an intermediate in CertificateInfo.State.
const (
	StateActive   = string(store.StateActive)
	StateRetired  = string(store.StateRetired)  // retired, still published for its leaves
	StatePrepared = string(store.StatePrepared) // minted, not yet activated
	// StateAbandoned: minted, never activated, and never will be (a newer
	// generation of its lineage was activated; store.States).
	StateAbandoned = string(store.StateAbandoned)
)

// CertificateInfo is one CA certificate in Status.Certificates.
type CertificateInfo struct {
	// Kind is the inventory's kind: root, intermediate, cacerts or
	// clustertrustbundle.
	Kind string `json:"kind"`
	// Namespace and Name name what holds it: "root" or "gen-<id>" for
	// meshca's own material, a Secret, a ClusterTrustBundle.
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// State is set for meshca's intermediates: active, retired or prepared.
	State   string `json:"state,omitempty"`
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
	// Serial is lower-case hex, as meshca's records spell it.
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	// Health is ok, warning, critical or expired (CertHealth).
	Health string `json:"health"`
	// Revoked is set for meshca's intermediates that are revoked (on
	// their root's CRL; GenerationInfo.Revoked says when and why).
	Revoked bool `json:"revoked,omitempty"`
}

// BundleInfo is one object holding CA certificates: the roots meshca
// publishes (kind root, name "root"), the cacerts Secret, a
// ClusterTrustBundle.
type BundleInfo struct {
	Kind         string `json:"kind"`
	Namespace    string `json:"namespace,omitempty"`
	Name         string `json:"name"`
	Certificates int    `json:"certificates"`
	// NotAfter is the earliest notAfter of its certificates; Health the
	// worst health among them.
	NotAfter time.Time `json:"notAfter"`
	Health   string    `json:"health"`
}

// AlertInfo is a firing alert (store.AlertState, without the delivery
// bookkeeping).
type AlertInfo struct {
	Rule     string    `json:"rule"`
	Object   string    `json:"object"`
	Severity string    `json:"severity"`
	Summary  string    `json:"summary"`
	Action   string    `json:"action,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
	StartsAt time.Time `json:"startsAt"`
}

// LiveStatus assembles a Status: the store's part (StoreStatus), every
// CA certificate the inventory sources know, the bundles they make, the
// rotation controllers' states and the firing alerts. The running service
// and the CLI against a stopped service use it alike, with the sources
// each has; the server adds the CRLs.
type LiveStatus struct {
	Store StoreState
	// Inventory are the sources of the CA certificate inventory, the same
	// the metrics read (memory and informer caches, never the apiserver).
	Inventory []inventory.Source
	// Rotation are the rotating controllers, in the order shown.
	Rotation []rotation.Reporter
	// Alerts, when set, gives the firing alerts.
	Alerts interface {
		ListAlertStates(ctx context.Context) ([]store.AlertState, error)
	}
	// Clock is the wall clock (nil: the real one).
	Clock clock.PassiveClock
}

// Status implements StatusSource.
func (l *LiveStatus) Status(ctx context.Context) Status {
	now := time.Now()
	if l.Clock != nil {
		now = l.Clock.Now()
	}
	st := StoreStatus(ctx, l.Store)
	st.GeneratedAt = now.UTC()
	st.Certificates, st.Bundles, st.Rotation, st.Alerts = []CertificateInfo{}, []BundleInfo{}, []rotation.Status{}, []AlertInfo{}
	states, revoked := map[string]string{}, map[string]bool{}
	for _, g := range st.Generations {
		states[store.GenerationScope(g.ID)] = g.StateName()
		revoked[store.GenerationScope(g.ID)] = g.Revoked != nil
	}
	seen := map[[4]string]bool{}
	for _, src := range l.Inventory {
		certs, err := src.Certificates(ctx)
		if err != nil {
			st.Problems = append(st.Problems, src.Name()+": "+err.Error())
		}
		for _, c := range certs {
			ci := certificateInfo(c, now)
			key := [4]string{ci.Kind, ci.Namespace, ci.Name, ci.Serial}
			if seen[key] {
				continue // ca-cert.pem is also the head of cert-chain.pem
			}
			seen[key] = true
			if ci.Kind == inventory.KindIntermediate {
				ci.State, ci.Revoked = states[ci.Name], revoked[ci.Name]
			}
			st.Certificates = append(st.Certificates, ci)
		}
	}
	st.Certificates = append(st.Certificates, prepared(st.Generations, seen, now)...)
	sortByKind(st.Certificates)
	st.Bundles = bundles(st.Certificates)
	for _, r := range l.Rotation {
		st.Rotation = append(st.Rotation, r.RotationStatus())
	}
	if l.Alerts != nil {
		as, err := l.Alerts.ListAlertStates(ctx)
		if err != nil {
			st.Problems = append(st.Problems, "alerts: "+err.Error())
		}
		for _, a := range as {
			if a.Status == store.AlertFiring {
				st.Alerts = append(st.Alerts, AlertInfo{Rule: a.Rule, Object: a.Object, Severity: a.Severity, Summary: a.Summary, Action: a.Action, Expires: a.Expires, StartsAt: a.StartsAt})
			}
		}
	}
	return st
}

func certificateInfo(c inventory.Certificate, now time.Time) CertificateInfo {
	return CertificateInfo{
		Kind: c.Kind, Namespace: c.Namespace, Name: c.Name,
		Subject: c.Cert.Subject.String(), Issuer: c.Cert.Issuer.String(),
		Serial:    hex.EncodeToString(c.Cert.SerialNumber.Bytes()),
		NotBefore: c.Cert.NotBefore.UTC(), NotAfter: c.Cert.NotAfter.UTC(),
		Health: CertHealth(c.Cert.NotBefore, c.Cert.NotAfter, now),
	}
}

// prepared are the generations minted but not activated (prepared or
// abandoned) and not expired: not published, so no inventory source
// reports them.
func prepared(gens []GenerationInfo, seen map[[4]string]bool, now time.Time) []CertificateInfo {
	var out []CertificateInfo
	for _, g := range gens {
		if !g.ActivatedAt.IsZero() || g.cert == nil || !now.Before(g.cert.NotAfter) {
			continue
		}
		ci := certificateInfo(inventory.Certificate{Kind: inventory.KindIntermediate, Name: store.GenerationScope(g.ID), Cert: g.cert}, now)
		if seen[[4]string{ci.Kind, ci.Namespace, ci.Name, ci.Serial}] {
			continue
		}
		ci.State, ci.Revoked = g.StateName(), g.Revoked != nil
		out = append(out, ci)
	}
	return out
}

// bundles groups certs by the object holding them, in the order first seen.
func bundles(certs []CertificateInfo) []BundleInfo {
	out := []BundleInfo{}
	index := map[[3]string]int{}
	for _, c := range certs {
		if c.Kind == inventory.KindIntermediate {
			continue // one certificate per generation: the table says it all
		}
		k := [3]string{c.Kind, c.Namespace, c.Name}
		i, ok := index[k]
		if !ok {
			index[k] = len(out)
			out = append(out, BundleInfo{Kind: c.Kind, Namespace: c.Namespace, Name: c.Name, NotAfter: c.NotAfter, Health: HealthOK})
			i = len(out) - 1
		}
		b := &out[i]
		b.Certificates++
		if c.NotAfter.Before(b.NotAfter) {
			b.NotAfter = c.NotAfter
		}
		b.Health = worse(b.Health, c.Health)
	}
	return out
}

var kindOrder = map[string]int{inventory.KindRoot: 0, inventory.KindIntermediate: 1, inventory.KindCACerts: 2, inventory.KindClusterTrustBundle: 3}

// sortByKind orders certificates by kind (roots, intermediates, cacerts,
// ClusterTrustBundles), keeping the sources' order within a kind.
func sortByKind(cs []CertificateInfo) {
	slices.SortStableFunc(cs, func(a, b CertificateInfo) int {
		return cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind])
	})
}
