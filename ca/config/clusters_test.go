package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/profile"
)

// withLocal is minimal with a local cluster, which kubeconfig Secrets
// need (and kubernetes.clusterID checks).
const withLocal = "kubernetes: {kubeconfig: /etc/meshca/kubeconfig}\n"

// TestClusters_Defaults: a plug-in cluster gets the mesh's trust domain,
// istio-system, a common name of its own and a classical intermediate
// with the shared lifetime; a kubeconfig Secret defaults to meshca's
// namespace and the key istioctl create-remote-secret writes (the cluster
// ID); a relative kubeconfig file is relative to the configuration file.
func TestClusters_Defaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meshca.yaml")
	require.NoError(t, os.WriteFile(path, []byte(mergeYAML(t, minimal, withLocal+`
intermediate: {commonName: mesh CA, lifetime: 720h}
clusters:
  - {id: east, kubeconfig: east.kubeconfig, mode: plug-in}
  - {id: west, kubeconfigSecret: {name: west-remote}, mode: meshca-signs}
  - {id: north, kubeconfig: /abs/north, mode: plug-in, istioNamespace: istio-north, intermediate: {commonName: north CA, organization: North}}
`)), 0o600))
	c, err := config.Load(path)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	east, west, north := c.Clusters[0], c.Clusters[1], c.Clusters[2]
	require.Equal(t, config.ClusterConfig{
		ID: "east", Kubeconfig: filepath.Join(dir, "east.kubeconfig"), TrustDomain: "cluster.local", Mode: config.ClusterModePlugIn,
		IstioNamespace: "istio-system", Intermediate: config.ClusterIntermediateConfig{CommonName: "mesh CA cluster east", Organization: "meshca"},
	}, east)
	require.Equal(t, &config.SecretKeyRef{Namespace: "istio-system", Name: "west-remote", Key: "west"}, west.KubeconfigSecret)
	require.Equal(t, config.ClusterIntermediateConfig{}, west.Intermediate)
	require.Equal(t, "/abs/north", north.Kubeconfig)
	require.Equal(t, "istio-north", north.IstioNamespace)

	require.True(t, east.PlugIn())
	require.False(t, west.PlugIn())
	require.Equal(t, "cluster:east", east.Lineage())
	require.Equal(t, []string{"cluster:east", "cluster:north"}, c.SeparateLineages(), "meshca-signs clusters have no lineage")
	ic := c.ClusterIntermediate(north)
	want := c.Intermediate
	want.Profile, want.PQAlgorithm, want.CommonName, want.Organization = profile.Classical, "", "north CA", "North"
	require.Equal(t, want, ic)
	require.Equal(t, profile.Catalyst, c.Intermediate.Profile, "the shared intermediate keeps its profile")
}

// TestClusters_TokenReviewClusters: meshca-signs clusters and the
// deprecated kubernetes.remoteClusters feed the one map the Istio
// endpoint selects TokenReview clusters from; plug-in clusters are not
// in it (their istiod signs).
func TestClusters_TokenReviewClusters(t *testing.T) {
	c, err := config.Parse([]byte(mergeYAML(t, minimal, `
kubernetes: {kubeconfig: /etc/meshca/kubeconfig, remoteClusters: {old: /etc/meshca/old.kubeconfig}}
clusters:
  - {id: east, kubeconfig: /k/east, mode: plug-in}
  - {id: west, kubeconfig: /k/west, mode: meshca-signs}
`)))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	got := c.TokenReviewClusters()
	require.Len(t, got, 2)
	require.Equal(t, "/etc/meshca/old.kubeconfig", got["old"].Kubeconfig)
	require.Equal(t, "/k/west", got["west"].Kubeconfig)
	require.Equal(t, config.ClusterModeMeshcaSigns, got["old"].Mode)
}

// TestClusters_Validate: every mistake names its key and says how to fix it.
func TestClusters_Validate(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want []string
	}{
		"no id": {withLocal + `clusters: [{kubeconfig: /k, mode: plug-in}]`,
			[]string{`clusters[0].id: must be set: the cluster's Istio cluster ID`}},
		"invalid id": {withLocal + `clusters: [{id: "east/1", kubeconfig: /k, mode: plug-in}]`,
			[]string{`clusters[0].id: "east/1" is not a valid Istio cluster ID (Istio uses it as a Kubernetes label value)`}},
		"too long an id": {withLocal + `clusters: [{id: ` + strings.Repeat("e", 64) + `, kubeconfig: /k, mode: meshca-signs}]`,
			[]string{`clusters[0].id: "eeee`}},
		"twice": {withLocal + `clusters: [{id: east, kubeconfig: /k, mode: meshca-signs}, {id: east, kubeconfig: /j, mode: meshca-signs}]`,
			[]string{`clusters[1].id: "east" is used twice`}},
		"the local cluster": {withLocal + `clusters: [{id: Kubernetes, kubeconfig: /k, mode: meshca-signs}]`,
			[]string{`clusters[0].id: "Kubernetes" is kubernetes.clusterID, the local cluster`}},
		"also in remoteClusters": {"kubernetes: {kubeconfig: /k, remoteClusters: {east: /e}}\nclusters: [{id: east, kubeconfig: /k, mode: meshca-signs}]",
			[]string{`clusters[0].id: "east" is also in kubernetes.remoteClusters (deprecated); remove it there`}},
		"no kubeconfig": {withLocal + `clusters: [{id: east, mode: plug-in}]`,
			[]string{`clusters[0]: needs the cluster's kubeconfig: set kubeconfig (a file) or kubeconfigSecret`}},
		"two kubeconfigs": {withLocal + `clusters: [{id: east, kubeconfig: /k, kubeconfigSecret: {name: e}, mode: plug-in}]`,
			[]string{`clusters[0]: set kubeconfig (a file) or kubeconfigSecret, not both`}},
		"secret without a local cluster": {`clusters: [{id: east, kubeconfigSecret: {name: e, namespace: meshca}, mode: plug-in}]`,
			[]string{`clusters[0].kubeconfigSecret: is read from the local cluster, which is not configured`}},
		"bad secret name": {withLocal + `clusters: [{id: east, kubeconfigSecret: {name: "E!"}, mode: plug-in}]`,
			[]string{`clusters[0].kubeconfigSecret.name: "E!" is not a Secret name`}},
		"bad trust domain": {withLocal + `clusters: [{id: east, kubeconfig: /k, mode: plug-in, trustDomain: "Bad Domain"}]`,
			[]string{`clusters[0].trustDomain: `}},
		"bad namespace": {withLocal + `clusters: [{id: east, kubeconfig: /k, mode: plug-in, istioNamespace: Istio_System}]`,
			[]string{`clusters[0].istioNamespace: "Istio_System" is not a namespace name`}},
		"no mode": {withLocal + `clusters: [{id: east, kubeconfig: /k}]`,
			[]string{`clusters[0].mode: "" is not a mode; use meshca-signs (the cluster's proxies ask meshca, selected by their clusterid header) or plug-in`}},
		"meshca-signs in another trust domain": {withLocal + `clusters: [{id: east, kubeconfig: /k, mode: meshca-signs, trustDomain: east.example}]`,
			[]string{`clusters[0].trustDomain: "east.example" differs from trustDomain "cluster.local", but meshca signs a meshca-signs cluster's workloads in the mesh's trust domain`}},
		"meshca-signs with an intermediate": {withLocal + `clusters: [{id: east, kubeconfig: /k, mode: meshca-signs, intermediate: {commonName: x}}]`,
			[]string{`clusters[0].intermediate: is set, but a meshca-signs cluster's workloads get meshca's own intermediate`}},
		"plug-in under a pre-issued intermediate": {"root: {file: {cacertsDir: /etc/cacerts}}\nclusters: [{id: east, kubeconfig: /k, mode: plug-in}]",
			[]string{`clusters[0].mode: plug-in needs a root meshca can mint intermediates from`}},
		"plug-in with an HSM": {"keyStore: {type: pkcs11, uri: \"pkcs11:token=x\", dir: /d}\nintermediate: {profile: classical}\nclusters: [{id: east, kubeconfig: /k, mode: plug-in}]",
			[]string{`clusters[0].mode: plug-in writes the cluster's intermediate key into its cacerts Secret (ca-key.pem, for istiod to sign with), so the key must be a file: use keyStore.type softkms`}},
		"plug-in with Ed25519": {"intermediate: {keyAlgorithm: Ed25519}\nclusters: [{id: east, kubeconfig: /k, mode: plug-in}]",
			[]string{`clusters[0].mode: plug-in hands istiod an intermediate with intermediate.keyAlgorithm's key, and Istio's CA signs with RSA or ECDSA keys only`}},
		"the shared common name": {`clusters: [{id: east, kubeconfig: /k, mode: plug-in, intermediate: {commonName: meshca intermediate}}]`,
			[]string{`clusters[0].intermediate.commonName: "meshca intermediate" is already the common name of intermediate.commonName`}},
		"a signer's common name": {"authentication: {certSigners: [{name: gw, intermediate: {separate: true, commonName: x}}]}\nclusters: [{id: east, kubeconfig: /k, mode: plug-in, intermediate: {commonName: x}}]",
			[]string{`clusters[0].intermediate.commonName: "x" is already the common name of authentication.certSigners[0]`}},
		"two clusters, one common name": {`clusters: [{id: a, kubeconfig: /k, mode: plug-in, intermediate: {commonName: x}}, {id: b, kubeconfig: /k, mode: plug-in, intermediate: {commonName: x}}]`,
			[]string{`clusters[1].intermediate.commonName: "x" is already the common name of clusters[0].intermediate.commonName`}},
		"a long common name": {`clusters: [{id: ` + strings.Repeat("e", 50) + `, kubeconfig: /k, mode: plug-in}]`,
			[]string{`clusters[0].intermediate.commonName: "meshca intermediate cluster eee`}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(mergeYAML(t, minimal, tc.yaml)))
			require.NoError(t, err)
			err = c.Validate()
			require.Error(t, err)
			lines := strings.Split(err.Error(), "\n")
			require.Len(t, lines, len(tc.want), "exactly the expected problems: %v", err)
			for i, want := range tc.want {
				require.True(t, strings.HasPrefix(lines[i], want), "got %q, want prefix %q", lines[i], want)
			}
		})
	}
}

// TestClusters_ExampleBlockValidates: the commented clusters block of
// deploy/examples/meshca.yaml, uncommented, is a valid configuration.
func TestClusters_ExampleBlockValidates(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "meshca.yaml"))
	require.NoError(t, err)
	var block []string
	in := false
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "# clusters:" {
			in = true
		}
		if in && !strings.HasPrefix(line, "#") {
			break
		}
		if in {
			block = append(block, strings.TrimPrefix(line, "# "))
		}
	}
	require.NotEmpty(t, block, "the example has a commented clusters: block")
	c, err := config.Parse([]byte(mergeYAML(t, minimal, strings.Join(block, "\n"))))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Len(t, c.Clusters, 2)
	require.Equal(t, "meshca east CA", c.Clusters[0].Intermediate.CommonName)
	require.Equal(t, config.ClusterModeMeshcaSigns, c.Clusters[1].Mode)
}
