package helm_test

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The clusters list: a cluster whose kubeconfig is in a Secret gets get on
// exactly that Secret, in its namespace (default istiod's), and nothing
// else; the defaults render no such Role.
func TestChart_ClustersReadOnlyTheirKubeconfigSecrets(t *testing.T) {
	objs, _ := render(t, "meshca-multi", "istio-system", []string{filepath.Join("examples", "multicluster.yaml")},
		"--set-json", `config.clusters[2]={"id":"north","mode":"plug-in","kubeconfigSecret":{"namespace":"remotes","name":"north","key":"kc"}}`)
	var roles []object
	for _, o := range objs {
		if strings.HasSuffix(o.meta("name"), "-cluster-kubeconfigs") {
			roles = append(roles, o)
		}
	}
	want := map[string][]any{
		"Role istio-system/meshca-multi-cluster-kubeconfigs":        {"istio-remote-secret-east"},
		"Role remotes/meshca-multi-cluster-kubeconfigs":             {"north"},
		"RoleBinding istio-system/meshca-multi-cluster-kubeconfigs": nil,
		"RoleBinding remotes/meshca-multi-cluster-kubeconfigs":      nil,
	}
	if len(roles) != len(want) {
		t.Fatalf("rendered %d kubeconfig RBAC objects, want %d", len(roles), len(want))
	}
	for _, o := range roles {
		names, ok := want[o.key()]
		if !ok {
			t.Fatalf("unexpected %s", o.key())
		}
		if o.kind() != "Role" {
			if got := path(o, "subjects", 0, "name"); got != "meshca-multi" {
				t.Errorf("%s binds %v", o.key(), got)
			}
			continue
		}
		rule := []any{map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "resourceNames": names, "verbs": []any{"get"}}}
		if got := path(o, "rules"); !reflect.DeepEqual(got, rule) {
			t.Errorf("%s rules %v, want %v", o.key(), got, rule)
		}
	}
	objs, _ = render(t, "meshca", "istio-system", nil)
	for _, o := range objs {
		if strings.HasSuffix(o.meta("name"), "-cluster-kubeconfigs") {
			t.Errorf("the defaults render %s", o.key())
		}
	}
}
