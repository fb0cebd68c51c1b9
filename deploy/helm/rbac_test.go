package helm_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// rbacKinds are the kinds whose meaning the chart and deploy/rbac share.
var rbacKinds = []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}

// rbacMeaning reduces an RBAC object to what the apiserver authorizes with:
// a Role's rules as a sorted set of sorted rules, a binding's roleRef and
// sorted subjects. Labels, comments and order do not count.
func rbacMeaning(o object) string {
	var v any
	switch o.kind() {
	case "ClusterRole", "Role":
		var rules []string
		for _, r := range asList(o["rules"]) {
			rm := map[string][]string{}
			for k, l := range r.(map[string]any) {
				s := strs(l)
				sort.Strings(s)
				rm[k] = s
			}
			b, _ := json.Marshal(rm)
			rules = append(rules, string(b))
		}
		sort.Strings(rules)
		v = rules
	case "ClusterRoleBinding", "RoleBinding":
		var subjects []string
		for _, s := range asList(o["subjects"]) {
			b, _ := json.Marshal(s)
			subjects = append(subjects, string(b))
		}
		sort.Strings(subjects)
		v = map[string]any{"roleRef": o["roleRef"], "subjects": subjects}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func asList(v any) []any { l, _ := v.([]any); return l }

func strs(v any) []string {
	var s []string
	for _, x := range asList(v) {
		s = append(s, x.(string))
	}
	return s
}

func rbacObjects(objs []object) map[string]string {
	m := map[string]string{}
	for _, o := range objs {
		if slices.Contains(rbacKinds, o.kind()) {
			m[o.key()] = rbacMeaning(o)
		}
	}
	return m
}

// The chart's RBAC with every feature on, installed as release meshca in
// istio-system, means exactly what deploy/rbac/*.yaml grant: same objects,
// same rules, same subjects. A rule added to one and not the other fails.
func TestChart_RBACIsTheUnionOfDeployRBAC(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repo(t), "deploy", "rbac", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/rbac/*.yaml: %v", err)
	}
	var want []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decode(string(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want = append(want, objs...)
	}
	objs, _ := render(t, "meshca", "istio-system", []string{"../testdata/all-features.yaml"})
	got, wantM := rbacObjects(objs), rbacObjects(want)
	var diffs []string
	for k, w := range wantM {
		g, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, "missing from the chart: "+k)
		case g != w:
			diffs = append(diffs, "differs: "+k+"\n  chart:       "+g+"\n  deploy/rbac: "+w)
		}
	}
	for k := range got {
		if _, ok := wantM[k]; !ok {
			diffs = append(diffs, "only in the chart: "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Fatalf("the chart's RBAC and deploy/rbac drifted:\n%s", strings.Join(diffs, "\n"))
	}
	if len(got) < 20 {
		t.Fatalf("compared only %d RBAC objects", len(got))
	}
}

// Least privilege: a feature that is off gets no RBAC. The default values
// (no trust publishing, no Kubernetes signers, no admin listener, no
// Secret scan) grant only the Istio endpoint's TokenReview and pod reads,
// and the Lease of the singleton jobs (leader election is on by default,
// and meshca serve refuses to start when it may not get the Lease).
func TestChart_DefaultsGrantOnlyTheIstioEndpoint(t *testing.T) {
	objs, _ := render(t, "meshca", "istio-system", nil)
	var roles []string
	for k := range rbacObjects(objs) {
		if !strings.HasPrefix(k, "ServiceAccount ") {
			roles = append(roles, k)
		}
	}
	sort.Strings(roles)
	want := []string{"ClusterRole meshca-istio-endpoint", "ClusterRoleBinding meshca-istio-endpoint",
		"Role istio-system/meshca-controllers-lease", "RoleBinding istio-system/meshca-controllers-lease"}
	if !reflect.DeepEqual(roles, want) {
		t.Fatalf("default RBAC = %v, want %v", roles, want)
	}
}
