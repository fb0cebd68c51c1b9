package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStatus_ShowsTheClusterCopiesOfTheCA: with a cluster, meshca status
// lists the certificates of the cacerts Secret and of the
// ClusterTrustBundles meshca published (read from the inventory's
// informers, as the metrics are), each holder as a bundle.
func TestStatus_ShowsTheClusterCopiesOfTheCA(t *testing.T) {
	_, kubeconfig := meshcaInCluster(t)
	dir := initCA(t)
	appendYAML(t, dir, "kubernetes:\n  kubeconfig: "+kubeconfig+"\ntrustBundle:\n  enabled: true\n  publishCACerts: true\n")
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	chain := signLeaf(t, dir, workloadID)
	inter, rootCert := serialOf(chain[1]), serialOf(chain[len(chain)-1])

	type row struct{ kind, holder, state, serial, health string }
	var doc struct {
		Certificates []struct{ Kind, Namespace, Name, State, Serial, Health string } `json:"certificates"`
		Bundles      []struct {
			Kind, Namespace, Name, Health string
			Certificates                  int
		} `json:"bundles"`
		Problems []string `json:"problems"`
	}
	want := []row{
		{"root", "root", "", rootCert, "ok"},
		{"intermediate", "gen-1", "active", inter, "ok"},
		{"cacerts", "istio-system/cacerts", "", inter, "ok"},
		{"cacerts", "istio-system/cacerts", "", rootCert, "ok"},
		{"clustertrustbundle", "meshca.io:workload:roots", "", rootCert, "ok"},
	}
	// The informers fill their caches shortly after start: poll, then
	// compare the last answer.
	var got []row
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		require.NoError(t, json.Unmarshal([]byte(meshca(t, "status", "--dir", dir, "-o", "json")), &doc))
		got = nil
		for _, c := range doc.Certificates {
			h := c.Name
			if c.Namespace != "" {
				h = c.Namespace + "/" + c.Name
			}
			got = append(got, row{c.Kind, h, c.State, c.Serial, c.Health})
		}
		if len(got) == len(want) && len(doc.Problems) == 0 {
			break
		}
	}
	require.Equal(t, want, got, "problems: %v\n%s", doc.Problems, s.logs())
	require.Empty(t, doc.Problems)
	type bundle struct {
		kind, holder string
		n            int
	}
	var bundles []bundle
	for _, b := range doc.Bundles {
		h := b.Name
		if b.Namespace != "" {
			h = b.Namespace + "/" + b.Name
		}
		bundles = append(bundles, bundle{b.Kind, h, b.Certificates})
	}
	require.Equal(t, []bundle{{"root", "root", 1}, {"cacerts", "istio-system/cacerts", 2}, {"clustertrustbundle", "meshca.io:workload:roots", 1}}, bundles)

	out := meshca(t, "status", "--dir", dir)
	rows := caRows(t, out)
	require.Len(t, rows, 5, out)
	require.Equal(t, []string{"clustertrustbundle", "meshca.io:workload:roots", "-"}, rows[4][:3])
	require.True(t, strings.Contains(out, "\nBUNDLES\n"), out)
}
