package helm_test

import (
	"reflect"
	"testing"

	"github.com/meshca/meshca/ca/config"
)

// With config.bundleEndpoint.address the chart exposes the SPIFFE bundle
// endpoint: the https-bundle port on the container and the Service, and a
// NetworkPolicy rule for it from networkPolicy.bundleEndpoint.from (by
// default every source); the rendered configuration validates. Without
// it, none of these exist.
func TestChart_BundleEndpointPortServiceAndNetworkPolicy(t *testing.T) {
	ports := func(objs []object) (container, service map[string]any, policy map[string]any) {
		t.Helper()
		container, service, policy = map[string]any{}, map[string]any{}, map[string]any{}
		for _, p := range path(one(t, objs, "Deployment", "meshca"), "spec", "template", "spec", "containers", 0, "ports").([]any) {
			container[path(p, "name").(string)] = path(p, "containerPort")
		}
		for _, p := range path(one(t, objs, "Service", "meshca"), "spec", "ports").([]any) {
			service[path(p, "name").(string)] = path(p, "port")
		}
		for _, r := range path(one(t, objs, "NetworkPolicy", "meshca"), "spec", "ingress").([]any) {
			policy[path(path(r, "ports").([]any)[0], "port").(string)] = path(r, "from")
		}
		return container, service, policy
	}
	objs, _ := render(t, "meshca", "istio-system", nil)
	c, s, np := ports(objs)
	for name, m := range map[string]map[string]any{"container": c, "Service": s, "NetworkPolicy": np} {
		if _, ok := m["https-bundle"]; ok {
			t.Errorf("%s has an https-bundle port while config.bundleEndpoint is off", name)
		}
	}

	objs, _ = render(t, "meshca", "istio-system", nil,
		"--set", "config.bundleEndpoint.address=:8443", "--set", "config.bundleEndpoint.profile=https_spiffe")
	c, s, np = ports(objs)
	if c["https-bundle"] != float64(8443) || s["https-bundle"] != float64(8443) {
		t.Errorf("https-bundle: container %v, Service %v; want 8443", c["https-bundle"], s["https-bundle"])
	}
	if from, ok := np["https-bundle"]; !ok || from != nil {
		t.Errorf("NetworkPolicy https-bundle rule: present %v, from %v; want a rule without from (every source)", ok, from)
	}
	raw := path(one(t, objs, "ConfigMap", "-config"), "data", "meshca.yaml").(string)
	cfg, err := config.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("meshca.yaml does not validate:\n%v\n%s", err, raw)
	}
	if cfg.BundleEndpoint.Address != ":8443" || cfg.BundleEndpoint.Profile != config.BundleProfileSPIFFE {
		t.Errorf("bundleEndpoint = %+v", cfg.BundleEndpoint)
	}

	objs, _ = render(t, "meshca", "istio-system", nil,
		"--set", "config.bundleEndpoint.address=:8443", "--set", "config.bundleEndpoint.profile=https_spiffe",
		"--set", "networkPolicy.bundleEndpoint.from[0].ipBlock.cidr=203.0.113.0/24")
	_, _, np = ports(objs)
	want := []any{map[string]any{"ipBlock": map[string]any{"cidr": "203.0.113.0/24"}}}
	if !reflect.DeepEqual(np["https-bundle"], want) {
		t.Errorf("NetworkPolicy https-bundle from = %v, want %v", np["https-bundle"], want)
	}
}
