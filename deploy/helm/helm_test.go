// Package helm_test checks meshca's Helm chart (deploy/helm/meshca) with the
// real Helm (bin/helm-<HelmVersion>, built by `make testbin`): it lints
// strictly, renders for each example setup, every rendered meshca.yaml
// passes meshca's own configuration validation, its RBAC is the RBAC of
// deploy/rbac, its PrometheusRule and dashboard are the files under
// deploy/prometheus and deploy/grafana, and every rendered object is
// accepted by a real kube-apiserver through server-side apply.
package helm_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/test/reporoot"
)

// HelmVersion is the Helm that test/tools/testbin.sh installs (HELM_VERSION).
const HelmVersion = "4.3.2"

// kubeVersion is the version the chart is rendered for: the test apiserver's.
const kubeVersion = "v" + kubeenv.KubeVersion

// The example setups of examples/, each with the release name it is
// installed under in the apply test (distinct names: ClusterRoles are
// cluster-scoped).
var examples = []struct{ file, release string }{
	{"plugin-ca.yaml", "meshca-plugin"},
	{"external-ca.yaml", "meshca-external"},
	{"istiod-ra.yaml", "meshca-ra"},
	{"multicluster.yaml", "meshca-multi"},
}

// object is one rendered Kubernetes object.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }

func (o object) meta(field string) string {
	m, _ := o["metadata"].(map[string]any)
	s, _ := m[field].(string)
	return s
}

func (o object) key() string {
	if ns := o.meta("namespace"); ns != "" {
		return o.kind() + " " + ns + "/" + o.meta("name")
	}
	return o.kind() + " " + o.meta("name")
}

// repo returns the repository root.
func repo(t *testing.T) string {
	t.Helper()
	dir, err := reporoot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// chartDir is the chart under test.
func chartDir(t *testing.T) string { return filepath.Join(repo(t), "deploy", "helm", "meshca") }

// helmBin returns bin/helm-<HelmVersion>/helm, failing (never skipping)
// when `make testbin` has not built it.
func helmBin(t *testing.T) string {
	t.Helper()
	p := filepath.Join(repo(t), "bin", "helm-"+HelmVersion, "helm")
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("helm %s is missing at %s: run `make testbin`", HelmVersion, p)
	}
	return p
}

// helm runs helm with args and returns its stdout; stderr (Helm logs the
// chart's symbolic links at level INFO) is returned with the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// render runs helm template for release in namespace with the values files
// (relative to the chart) and --set flags, and decodes every object.
func render(t *testing.T, release, namespace string, valuesFiles []string, extra ...string) ([]object, string) {
	t.Helper()
	out, err := renderErr(t, release, namespace, valuesFiles, extra...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decode(out)
	if err != nil {
		t.Fatalf("decoding helm template output: %v", err)
	}
	return objs, out
}

func renderErr(t *testing.T, release, namespace string, valuesFiles []string, extra ...string) (string, error) {
	t.Helper()
	args := []string{"template", release, chartDir(t), "--namespace", namespace, "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "--values", filepath.Join(chartDir(t), f))
	}
	return helm(t, append(args, extra...)...)
}

// decode splits a multi-document YAML stream into objects, dropping empty
// documents.
func decode(manifest string) ([]object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, fmt.Errorf("%w in document:\n%s", err, doc)
		}
		if len(o) == 0 {
			continue
		}
		if o.kind() == "" {
			return nil, fmt.Errorf("document without kind:\n%s", doc)
		}
		objs = append(objs, o)
	}
}

// one returns the single object of kind whose name ends in suffix.
func one(t *testing.T, objs []object, kind, suffix string) object {
	t.Helper()
	var got []object
	for _, o := range objs {
		if o.kind() == kind && strings.HasSuffix(o.meta("name"), suffix) {
			got = append(got, o)
		}
	}
	if len(got) != 1 {
		t.Fatalf("want exactly one %s named *%s, got %d", kind, suffix, len(got))
	}
	return got[0]
}

// path walks nested maps and lists ("spec", "template", 0, ...).
func path(v any, keys ...any) any {
	if o, ok := v.(object); ok {
		v = map[string]any(o)
	}
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}
