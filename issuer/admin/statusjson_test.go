package admin

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/rotation"
)

// keysOf are the keys of the JSON object b, sorted.
func keysOf(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m))
	return slices.Sorted(maps.Keys(m))
}

// TestStatusJSON_Schema pins the documented schema of GET /v1/status and
// 'meshca status -o json' (README, "meshca status"): a field renamed or
// dropped breaks scripts that read it.
func TestStatusJSON_Schema(t *testing.T) {
	ts := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	st := Status{
		TrustDomain: "cluster.local", Generation: 1, Store: Health{Path: "p", Healthy: false, Error: "e"}, GeneratedAt: ts,
		Generations:  []GenerationInfo{{ID: 1, Profile: "classical", Source: "file-minted", Subject: "CN=i", NotAfter: ts, ActivatedAt: ts, RetiredAt: ts}},
		CRLs:         []CRLInfo{{Scope: "gen-1", Number: 1, ThisUpdate: ts, NextUpdate: ts, Size: 1, Health: HealthOK}},
		Certificates: []CertificateInfo{{Kind: "cacerts", Namespace: "istio-system", Name: "cacerts", State: "active", Subject: "CN=i", Issuer: "CN=r", Serial: "01", NotBefore: ts, NotAfter: ts, Health: HealthOK}},
		Bundles:      []BundleInfo{{Kind: "cacerts", Namespace: "istio-system", Name: "cacerts", Certificates: 1, NotAfter: ts, Health: HealthOK}},
		Rotation:     []rotation.Status{{CA: "root", Phase: "p", PhaseCode: 1, Since: ts, Next: ts, Waiting: "w", Paused: true, Stuck: true, Problem: "x", LastSuccess: ts}},
		Alerts:       []AlertInfo{{Rule: "r", Object: "o", Severity: "critical", Summary: "s", Action: "a", Expires: ts, StartsAt: ts}},
		Problems:     []string{"cacerts: not synced"},
	}
	b, err := json.Marshal(st)
	require.NoError(t, err)
	require.Equal(t, []string{"alerts", "bundles", "certificates", "crls", "generatedAt", "generation", "generations", "intermediateNotAfter", "intermediateSubject", "lastRevocationSeq", "problems", "profile", "rotation", "store", "trustDomain"}, keysOf(t, b))
	var doc map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &doc))
	first := func(key string) []byte {
		var arr []json.RawMessage
		require.NoError(t, json.Unmarshal(doc[key], &arr))
		return arr[0]
	}
	require.Equal(t, []string{"error", "healthy", "path"}, keysOf(t, doc["store"]))
	require.Equal(t, []string{"health", "issuer", "kind", "name", "namespace", "notAfter", "notBefore", "serial", "state", "subject"}, keysOf(t, first("certificates")))
	require.Equal(t, []string{"certificates", "health", "kind", "name", "namespace", "notAfter"}, keysOf(t, first("bundles")))
	require.Equal(t, []string{"delta", "health", "nextUpdate", "number", "scope", "size", "thisUpdate"}, keysOf(t, first("crls")))
	require.Equal(t, []string{"ca", "lastSuccess", "next", "paused", "phase", "phaseCode", "problem", "since", "stuck", "waiting"}, keysOf(t, first("rotation")))
	require.Equal(t, []string{"action", "expires", "object", "rule", "severity", "startsAt", "summary"}, keysOf(t, first("alerts")))
	require.Equal(t, []string{"activatedAt", "active", "id", "notAfter", "profile", "retiredAt", "source", "state", "subject"}, keysOf(t, first("generations")))
	// Times are RFC 3339 in UTC.
	require.Contains(t, string(b), `"generatedAt":"2026-12-05T12:00:00Z"`)
}
