package helm_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/meshca/meshca/test/kubeenv"
)

// promCRDDir is where `make testbin` puts prometheus-operator's
// ServiceMonitor and PrometheusRule CRDs (test/tools/promcrds).
func promCRDDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(repo(t), "bin", "prometheus-operator-crds")
	for _, f := range []string{"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("prometheus-operator's CRD %s is missing (%v): run `make testbin`", f, err)
		}
	}
	return dir
}

// Every object the chart renders, CRDs included, for each example setup
// and for the all-features set, is accepted by a real kube-apiserver
// through server-side apply (schema-checked by the server, not parsed by
// a client), and then reads back from it.
func TestChart_AppliesToRealAPIServer(t *testing.T) {
	env, err := kubeenv.Start(kubeenv.WithCRDDirs(promCRDDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	sets := []struct {
		name, release string
		files         []string
	}{{"all-features", "meshca", []string{"../testdata/all-features.yaml"}}}
	for _, e := range examples {
		sets = append(sets, struct {
			name, release string
			files         []string
		}{e.file, e.release, []string{filepath.Join("examples", e.file)}})
	}
	for _, s := range sets {
		t.Run(s.name, func(t *testing.T) {
			ns := "istio-system"
			if err := env.CreateNamespace(ctx, ns); err != nil && !strings.Contains(err.Error(), "already exists") {
				t.Fatal(err)
			}
			objs, manifest := render(t, s.release, ns, s.files, "--include-crds")
			applied, err := env.ApplyYAML(ctx, []byte(manifest))
			if err != nil {
				t.Fatalf("the apiserver refused an object: %v", err)
			}
			if len(applied) != len(objs) {
				t.Fatalf("applied %d objects, rendered %d", len(applied), len(objs))
			}
			kinds := map[string]bool{}
			for _, u := range applied {
				kinds[u.GetKind()] = true
				if err := readBack(ctx, env, dyn, u); err != nil {
					t.Errorf("%s %s: %v", u.GetKind(), u.GetName(), err)
				}
			}
			var got []string
			for k := range kinds {
				got = append(got, k)
			}
			sort.Strings(got)
			for _, k := range []string{"ConfigMap", "CustomResourceDefinition", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
				"PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor", "ClusterRole", "ClusterRoleBinding"} {
				if !kinds[k] {
					t.Errorf("no %s among the applied kinds %v", k, got)
				}
			}
		})
	}
}

// readBack gets u from the apiserver.
func readBack(ctx context.Context, env *kubeenv.Env, dyn dynamic.Interface, u *unstructured.Unstructured) error {
	gvk := u.GroupVersionKind()
	m, err := env.CtrlClient.RESTMapper().RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
	if err != nil {
		return err
	}
	var r dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if u.GetNamespace() != "" {
		r = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	_, err = r.Get(ctx, u.GetName(), metav1.GetOptions{})
	return err
}
