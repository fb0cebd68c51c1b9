package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/issuer/admin"
	"github.com/meshca/meshca/rotation"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// fixedStatus is a status as the running service would answer it, with
// health already classified (the renderer only shows it).
func fixedStatus() admin.Status {
	return admin.Status{
		TrustDomain: "cluster.local", Generation: 3, Profile: "classical",
		IntermediateSubject: "CN=meshca intermediate 3", IntermediateNotAfter: at("2027-01-04T12:00:00Z"),
		Store:             admin.Health{Path: "/var/lib/meshca/meshca.db", Healthy: true},
		LastRevocationSeq: 3,
		GeneratedAt:       at("2026-12-05T12:00:00Z"),
		Generations: []admin.GenerationInfo{
			{ID: 1, Profile: "classical", Source: "file-minted", Subject: "CN=meshca intermediate 1", NotAfter: at("2026-12-07T12:00:00Z"), ActivatedAt: at("2026-10-01T00:00:00Z"), RetiredAt: at("2026-11-05T12:00:00Z"), State: "retired",
				Revoked: &admin.GenerationRevocation{Seq: 2, Reason: "cACompromise", RevokedAt: at("2026-11-20T08:00:00Z")}},
			{ID: 2, Profile: "classical", Source: "file-minted", Subject: "CN=meshca intermediate 2", NotAfter: at("2026-12-25T12:00:00Z"), State: "abandoned"},
			{ID: 3, Profile: "classical", Source: "file-minted", Subject: "CN=meshca intermediate 3", NotAfter: at("2027-01-04T12:00:00Z"), ActivatedAt: at("2026-11-05T12:00:00Z"), Active: true, State: "active"},
		},
		Certificates: []admin.CertificateInfo{
			{Kind: "root", Name: "root", Subject: "CN=meshca root", Serial: "01", NotAfter: at("2036-01-01T00:00:00Z"), Health: "ok"},
			{Kind: "intermediate", Name: "gen-1", State: "retired", Subject: "CN=meshca intermediate 1", Serial: "11", NotAfter: at("2026-12-07T12:00:00Z"), Health: "critical", Revoked: true},
			{Kind: "intermediate", Name: "gen-2", State: "abandoned", Subject: "CN=meshca intermediate 2", Serial: "21", NotAfter: at("2026-12-25T12:00:00Z"), Health: "ok"},
			{Kind: "intermediate", Name: "gen-3", State: "active", Subject: "CN=meshca intermediate 3", Serial: "22", NotAfter: at("2027-01-04T12:00:00Z"), Health: "ok"},
			{Kind: "cacerts", Namespace: "istio-system", Name: "cacerts", Subject: "CN=plugged", Serial: "55", NotAfter: at("2026-12-10T00:00:00Z"), Health: "warning"},
		},
		Bundles: []admin.BundleInfo{
			{Kind: "root", Name: "root", Certificates: 1, NotAfter: at("2036-01-01T00:00:00Z"), Health: "ok"},
			{Kind: "cacerts", Namespace: "istio-system", Name: "cacerts", Certificates: 1, NotAfter: at("2026-12-10T00:00:00Z"), Health: "warning"},
		},
		CRLs: []admin.CRLInfo{
			{Scope: "gen-3", Number: 4, ThisUpdate: at("2026-12-05T11:00:00Z"), NextUpdate: at("2026-12-06T11:00:00Z"), Size: 512, Health: "ok"},
			{Scope: "gen-1", Number: 9, ThisUpdate: at("2026-12-04T00:00:00Z"), NextUpdate: at("2026-12-05T00:00:00Z"), Size: 300, Health: "stale"},
		},
		Rotation: []rotation.Status{
			{CA: "intermediate", Phase: "idle", Next: at("2026-12-20T12:00:00Z"), LastSuccess: at("2026-11-05T12:00:00Z")},
			{CA: "root", Phase: "publish-both-roots", PhaseCode: 1, Since: at("2026-12-04T12:00:00Z"), Paused: true, Waiting: "3 of 412 workload certificates still chain only to the old root"},
		},
		Alerts: []admin.AlertInfo{
			{Rule: "ca-expiry", Object: "gen-1", Severity: "critical", Summary: "intermediate gen-1 expires in 2d", StartsAt: at("2026-12-05T11:00:00Z")},
		},
	}
}

// goldenStatus is fixedStatus rendered, written by hand: every column is
// as wide as its widest cell plus two spaces, the last one unpadded;
// "in 3313d" is 2036-01-01T00:00 less 2026-12-05T12:00 (27 days to
// 2027-01-01, 9 years with 2 leap days, less 12 hours), rounded down.
const goldenStatus = `server:             running (answered through its admin endpoint)
trust domain:       cluster.local
active generation:  3 (classical), intermediate CN=meshca intermediate 3, not after 2027-01-04T12:00:00Z
store:              /var/lib/meshca/meshca.db, healthy
last revocation:    3
as of:              2026-12-05T12:00:00Z

CA CERTIFICATES
KIND          HOLDER                STATE             NOT AFTER             EXPIRES   HEALTH    SERIAL  SUBJECT
root          root                  -                 2036-01-01T00:00:00Z  in 3313d  ok        01      CN=meshca root
intermediate  gen-1                 retired, REVOKED  2026-12-07T12:00:00Z  in 2d     critical  11      CN=meshca intermediate 1
intermediate  gen-2                 abandoned         2026-12-25T12:00:00Z  in 20d    ok        21      CN=meshca intermediate 2
intermediate  gen-3                 active            2027-01-04T12:00:00Z  in 30d    ok        22      CN=meshca intermediate 3
cacerts       istio-system/cacerts  -                 2026-12-10T00:00:00Z  in 4d     warning   55      CN=plugged

BUNDLES
KIND     HOLDER                CERTS  EARLIEST NOT AFTER    EXPIRES   HEALTH
root     root                  1      2036-01-01T00:00:00Z  in 3313d  ok
cacerts  istio-system/cacerts  1      2026-12-10T00:00:00Z  in 4d     warning

CRLS
SCOPE  KIND  NUMBER  THIS UPDATE           NEXT UPDATE           NEXT IN  HEALTH  BYTES
gen-3  full  4       2026-12-05T11:00:00Z  2026-12-06T11:00:00Z  in 23h   ok      512
gen-1  full  9       2026-12-04T00:00:00Z  2026-12-05T00:00:00Z  12h ago  stale   300

ROTATION
CA            PHASE               STATE   SINCE                 NEXT                           LAST SUCCESS          NOTE
intermediate  idle                ok      -                     2026-12-20T12:00:00Z (in 15d)  2026-11-05T12:00:00Z
root          publish-both-roots  paused  2026-12-04T12:00:00Z  -                              -                     3 of 412 workload certificates still chain only to the old root

ALERTS
SEVERITY  RULE       OBJECT  SINCE                 SUMMARY
critical  ca-expiry  gen-1   2026-12-05T11:00:00Z  intermediate gen-1 expires in 2d

GENERATIONS
ID  PROFILE    SOURCE       STATE                                                 NOT AFTER             SUBJECT
1   classical  file-minted  retired, REVOKED 2026-11-20T08:00:00Z (cACompromise)  2026-12-07T12:00:00Z  CN=meshca intermediate 1
2   classical  file-minted  abandoned                                             2026-12-25T12:00:00Z  CN=meshca intermediate 2
3   classical  file-minted  active                                                2027-01-04T12:00:00Z  CN=meshca intermediate 3
`

func TestPrintStatus_Golden(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, printStatus(&b, fixedStatus(), true, false))
	require.Equal(t, goldenStatus, b.String())
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// TestPrintStatus_ColourKeepsTheColumnsAligned: with colour each health,
// rotation state and alert severity is wrapped in its SGR colour (ECMA-48
// section 8.3.117: 31 red, 32 green, 33 yellow, 0 reset), and without the
// escape sequences the text is exactly the plain table.
func TestPrintStatus_ColourKeepsTheColumnsAligned(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, printStatus(&b, fixedStatus(), true, true))
	out := b.String()
	for _, want := range []string{
		"\x1b[32mok\x1b[0m        01      CN=meshca root",
		"\x1b[31mcritical\x1b[0m  11",
		"\x1b[33mwarning\x1b[0m   55",
		"in 4d     \x1b[33mwarning\x1b[0m\n",
		"12h ago  \x1b[31mstale\x1b[0m   300",
		"\x1b[32mok\x1b[0m      -",
		"\x1b[33mpaused\x1b[0m  2026-12-04T12:00:00Z",
		"\x1b[31mcritical\x1b[0m  ca-expiry",
		"/var/lib/meshca/meshca.db, \x1b[32mhealthy\x1b[0m",
	} {
		require.Contains(t, out, want)
	}
	require.Equal(t, goldenStatus, ansi.ReplaceAllString(out, ""))
}

func TestPrintStatus_StoppedServiceAndEmptySections(t *testing.T) {
	st := admin.Status{
		TrustDomain: "cluster.local", Generation: 1, Profile: "classical", IntermediateSubject: "CN=i", IntermediateNotAfter: at("2027-01-04T12:00:00Z"),
		Store: admin.Health{Path: "/d/meshca.db", Healthy: false, Error: "disk full"}, GeneratedAt: at("2026-12-05T12:00:00Z"),
	}
	var b bytes.Buffer
	require.NoError(t, printStatus(&b, st, false, false))
	require.Equal(t, `server:             not running (read from the store)
trust domain:       cluster.local
active generation:  1 (classical), intermediate CN=i, not after 2027-01-04T12:00:00Z
store:              /d/meshca.db, UNHEALTHY: disk full
last revocation:    0
as of:              2026-12-05T12:00:00Z

CA CERTIFICATES
none known

BUNDLES
none

CRLS
none: meshca serve builds and serves the CRLs

ROTATION
none: meshca serve runs the rotation controllers

ALERTS
none firing

GENERATIONS
none
`, b.String())
}

func TestRotationNote_StuckShowsTheProblemFirst(t *testing.T) {
	st := admin.Status{GeneratedAt: at("2026-12-05T12:00:00Z"), Rotation: []rotation.Status{
		{CA: "intermediate", Phase: "prepared", Since: at("2026-12-01T00:00:00Z"), Stuck: true, Paused: true, Problem: "root source: connection refused", Waiting: "activation at 66%"},
	}}
	var b bytes.Buffer
	require.NoError(t, printStatus(&b, st, true, true))
	require.Contains(t, b.String(), "prepared  \x1b[31mstuck\x1b[0m  2026-12-01T00:00:00Z  -     -             root source: connection refused; activation at 66%\n")
}

func TestColourMode(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	none := env(nil)
	noColor := env(map[string]string{"NO_COLOR": "1"})
	cases := []struct {
		mode   string
		out    any
		getenv func(string) string
		want   bool
	}{
		{"always", &bytes.Buffer{}, none, true},
		{"always", w, noColor, true}, // the flag is the user's explicit choice
		{"never", w, none, false},
		{"auto", &bytes.Buffer{}, none, false},
		{"auto", w, none, false}, // piped
		{"", w, none, false},
		{"auto", w, noColor, false},
	}
	for _, c := range cases {
		got, err := useColour(c.mode, c.out, c.getenv)
		require.NoError(t, err)
		require.Equal(t, c.want, got, "%s %T %v", c.mode, c.out, c.getenv("NO_COLOR"))
	}
	_, err = useColour("yes", w, none)
	require.EqualError(t, err, `--color "yes": use auto, always or never`)
	require.False(t, strings.Contains(goldenStatus, "\x1b"))
}

func TestPrintStatus_ProblemsAfterAlerts(t *testing.T) {
	st := admin.Status{GeneratedAt: at("2026-12-05T12:00:00Z"), Problems: []string{"cacerts: the Secret informer has not synced", "alerts: store closed"}}
	var b bytes.Buffer
	require.NoError(t, printStatus(&b, st, true, false))
	require.Contains(t, b.String(), "\nALERTS\nnone firing\n\nPROBLEMS\ncacerts: the Secret informer has not synced\nalerts: store closed\n\nGENERATIONS\nnone\n")
}
