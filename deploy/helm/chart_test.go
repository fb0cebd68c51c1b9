package helm_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/ca/config"
)

// valuesSets are the values files every rendering test covers: the
// defaults, the three example setups and the all-features set of the RBAC
// test.
func valuesSets() map[string][]string {
	sets := map[string][]string{"defaults": nil, "all-features": {"../testdata/all-features.yaml"}}
	for _, e := range examples {
		sets[e.file] = []string{filepath.Join("examples", e.file)}
	}
	return sets
}

func TestChart_LintsStrictForEveryValuesSet(t *testing.T) {
	for name, files := range valuesSets() {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", "--kube-version", kubeVersion, chartDir(t)}
			for _, f := range files {
				args = append(args, "--values", filepath.Join(chartDir(t), f))
			}
			out, err := helm(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
				t.Fatalf("helm lint did not pass:\n%s", out)
			}
		})
	}
}

// Every rendered meshca.yaml is decoded and validated by meshca's own
// config package, as `meshca serve --config` does at start-up: an unknown
// or misspelt key, or a value meshca refuses, fails here.
func TestChart_RenderedConfigPassesMeshcaValidation(t *testing.T) {
	for name, files := range valuesSets() {
		t.Run(name, func(t *testing.T) {
			objs, _ := render(t, "meshca", "istio-system", files)
			cm := one(t, objs, "ConfigMap", "-config")
			raw, ok := path(cm, "data", "meshca.yaml").(string)
			if !ok || raw == "" {
				t.Fatalf("ConfigMap %s has no data meshca.yaml", cm.key())
			}
			cfg, err := config.Parse([]byte(raw))
			if err != nil {
				t.Fatalf("meshca.yaml does not parse:\n%v\n%s", err, raw)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("meshca.yaml does not validate:\n%v\n%s", err, raw)
			}
			// The serving certificate carries the Service's names, the TLS
			// SNI of Istio's CA_ADDR.
			for _, n := range []string{"meshca.istio-system.svc", "meshca.istio-system.svc.cluster.local"} {
				if !contains(cfg.Server.DNSNames, n) {
					t.Errorf("server.dnsNames %v lacks the Service name %s", cfg.Server.DNSNames, n)
				}
			}
			if !cfg.Kubernetes.InCluster {
				t.Error("kubernetes.inCluster is not true")
			}
		})
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// The Deployment's pod is hardened as the chart promises, its probes hit
// meshca's real ops endpoints on the configured port, and it has
// resource requests, anti-affinity and a PodDisruptionBudget.
func TestChart_DeploymentIsHardenedAndProbed(t *testing.T) {
	objs, _ := render(t, "meshca", "istio-system", nil, "--set", "config.server.opsListen=:9090")
	d := one(t, objs, "Deployment", "meshca")
	pod := path(d, "spec", "template", "spec")
	want := map[string]any{
		"runAsNonRoot": true, "runAsUser": float64(65532), "runAsGroup": float64(65532), "fsGroup": float64(65532),
	}
	for k, v := range want {
		if got := path(pod, "securityContext", k); got != v {
			t.Errorf("pod securityContext.%s = %v, want %v", k, got, v)
		}
	}
	if got := path(pod, "securityContext", "seccompProfile", "type"); got != "RuntimeDefault" {
		t.Errorf("seccompProfile.type = %v, want RuntimeDefault", got)
	}
	c := path(pod, "containers", 0)
	for k, v := range map[string]any{"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "privileged": false} {
		if got := path(c, "securityContext", k); got != v {
			t.Errorf("container securityContext.%s = %v, want %v", k, got, v)
		}
	}
	if got := path(c, "securityContext", "capabilities", "drop"); !reflect.DeepEqual(got, []any{"ALL"}) {
		t.Errorf("capabilities.drop = %v, want [ALL]", got)
	}
	// Probes: /healthz (startup, liveness) and /readyz (readiness) on the
	// named ops port, which is config.server.opsListen's port.
	for probe, p := range map[string]string{"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := path(c, probe, "httpGet", "path"); got != p {
			t.Errorf("%s path = %v, want %s", probe, got, p)
		}
		if got := path(c, probe, "httpGet", "port"); got != "http-ops" {
			t.Errorf("%s port = %v, want http-ops", probe, got)
		}
	}
	ports := map[string]any{}
	for _, p := range path(c, "ports").([]any) {
		ports[path(p, "name").(string)] = path(p, "containerPort")
	}
	if ports["http-ops"] != float64(9090) || ports["tls-grpc"] != float64(15012) {
		t.Errorf("container ports = %v, want http-ops 9090 (config.server.opsListen) and tls-grpc 15012", ports)
	}
	if path(c, "resources", "requests", "cpu") == nil || path(c, "resources", "requests", "memory") == nil {
		t.Errorf("container has no cpu and memory requests: %v", path(c, "resources"))
	}
	if path(pod, "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution") == nil {
		t.Errorf("no pod anti-affinity: %v", path(pod, "affinity"))
	}
	pdb := one(t, objs, "PodDisruptionBudget", "meshca")
	if got := path(pdb, "spec", "maxUnavailable"); got != float64(1) {
		t.Errorf("PodDisruptionBudget maxUnavailable = %v, want 1", got)
	}
	if got := path(pdb, "spec", "selector", "matchLabels"); !reflect.DeepEqual(got, path(d, "spec", "selector", "matchLabels")) {
		t.Errorf("PodDisruptionBudget selects %v, the Deployment %v", got, path(d, "spec", "selector", "matchLabels"))
	}
}

// A bbolt file belongs to one pod: more replicas on it are refused at
// render time, with the reason.
func TestChart_RefusesSeveralReplicasOnBolt(t *testing.T) {
	_, err := renderErr(t, "meshca", "istio-system", nil, "--set", "replicaCount=2")
	if err == nil || !strings.Contains(err.Error(), "replicaCount 2 with config.store.type bolt") {
		t.Fatalf("helm template with replicaCount=2 on bolt: err = %v, want the bolt refusal", err)
	}
}

// Several replicas share the key store: the chart refuses a claim that
// only one node can mount.
func TestChart_SeveralReplicasNeedAReadWriteManyKeyStore(t *testing.T) {
	pg := []string{"--set", "replicaCount=2", "--set-string", "config.store.type=postgres", "--set-string", "config.store.dsn=host=db dbname=meshca", "--set-string", "config.store.passwordFile=/var/run/secrets/meshca/db/password"}
	_, err := renderErr(t, "meshca", "istio-system", nil, pg...)
	if err == nil || !strings.Contains(err.Error(), "replicaCount 2 needs the key store (config.keyStore.dir) on one ReadWriteMany volume") {
		t.Fatalf("replicaCount=2 on a ReadWriteOnce claim: err = %v, want the ReadWriteMany refusal", err)
	}
	if _, err := renderErr(t, "meshca", "istio-system", nil, append(pg, "--set", "persistence.accessModes={ReadWriteMany}")...); err != nil {
		t.Fatalf("replicaCount=2 on PostgreSQL with a ReadWriteMany claim is refused: %v", err)
	}
}

// Secrets never reach the config ConfigMap: a DSN with a password or a
// PKCS#11 URI with pin-value is refused at render time.
func TestChart_RefusesSecretsInTheConfigMap(t *testing.T) {
	for name, tc := range map[string]struct{ set, want string }{
		"url password":     {"config.store.dsn=postgres://meshca:s3cret@db/meshca", "config.store.dsn holds a password"},
		"keyword password": {"config.store.dsn=host=db password=s3cret", "config.store.dsn holds a password"},
		"pin-value":        {"config.keyStore.uri=pkcs11:token=t?pin-value=1234", "config.keyStore.uri holds pin-value"},
	} {
		_, err := renderErr(t, "meshca", "istio-system", nil, "--set-string", tc.set)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
	if _, err := renderErr(t, "meshca", "istio-system", nil, "--set-string", "config.store.dsn=host=db user=meshca dbname=meshca"); err != nil && strings.Contains(err.Error(), "password") {
		t.Errorf("a DSN without a password is refused: %v", err)
	}
}

// The PrometheusRule's spec is deploy/prometheus/meshca-rules.yaml's (the
// file promtool tests), and the dashboard ConfigMap holds
// deploy/grafana/meshca-dashboard.json byte for byte: the chart reuses the
// files rather than copying them.
func TestChart_RulesAndDashboardAreTheDeployFiles(t *testing.T) {
	objs, _ := render(t, "meshca", "istio-system", nil)
	b, err := os.ReadFile(filepath.Join(repo(t), "deploy", "prometheus", "meshca-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	rule := one(t, objs, "PrometheusRule", "meshca")
	if !reflect.DeepEqual(rule["spec"], file["spec"]) {
		t.Errorf("the chart's PrometheusRule spec differs from deploy/prometheus/meshca-rules.yaml")
	}
	dash, err := os.ReadFile(filepath.Join(repo(t), "deploy", "grafana", "meshca-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	cm := one(t, objs, "ConfigMap", "-dashboard")
	if got, _ := path(cm, "data", "meshca-dashboard.json").(string); got != string(bytes.TrimRight(dash, "\n")) {
		t.Errorf("the dashboard ConfigMap differs from deploy/grafana/meshca-dashboard.json (%d vs %d bytes)", len(got), len(dash))
	}
	if got := path(cm, "metadata", "labels", "grafana_dashboard"); got != "1" {
		t.Errorf("dashboard ConfigMap label grafana_dashboard = %v, want \"1\" (Grafana's sidecar)", got)
	}
	sm := one(t, objs, "ServiceMonitor", "meshca")
	if got := path(sm, "spec", "endpoints", 0, "port"); got != "http-ops" {
		t.Errorf("ServiceMonitor scrapes port %v, want http-ops", got)
	}
}

// With crl.url in every certificate the whole mesh fetches CRLs: the chart
// serves them on their own port (config.crl.listen, :15016 by default) and
// admits the mesh there, while the ops port, whose connections the kubelet's
// probes need, stays Prometheus's. Without crl.listen the CRLs are on the
// ops port and the mesh is admitted to it.
func TestChart_CRLsHaveTheirOwnPortAndNetworkPolicyRule(t *testing.T) {
	sources := func(t *testing.T, objs []object) map[string]any {
		from := map[string]any{}
		for _, r := range path(one(t, objs, "NetworkPolicy", "meshca"), "spec", "ingress").([]any) {
			from[path(path(r, "ports").([]any)[0], "port").(string)] = path(r, "from")
		}
		return from
	}
	mesh := map[string]any{"namespaceSelector": map[string]any{}}
	prom := map[string]any{
		"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}},
		"podSelector":       map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "prometheus"}},
	}
	url := "config.crl.url=http://meshca.istio-system.svc:15016/crl"

	objs, _ := render(t, "meshca", "istio-system", nil, "--set", url)
	from := sources(t, objs)
	if !reflect.DeepEqual(from["http-crl"], []any{mesh}) || !reflect.DeepEqual(from["http-ops"], []any{prom}) {
		t.Errorf("ingress sources: http-crl %v (want the mesh), http-ops %v (want Prometheus only)", from["http-crl"], from["http-ops"])
	}
	svc := map[string]any{}
	for _, p := range path(one(t, objs, "Service", "meshca"), "spec", "ports").([]any) {
		svc[path(p, "name").(string)] = path(p, "port")
	}
	ctr := map[string]any{}
	for _, p := range path(one(t, objs, "Deployment", "meshca"), "spec", "template", "spec", "containers", 0, "ports").([]any) {
		ctr[path(p, "name").(string)] = path(p, "containerPort")
	}
	if svc["http-crl"] != float64(15016) || ctr["http-crl"] != float64(15016) {
		t.Errorf("http-crl: Service port %v, container port %v, want 15016", svc["http-crl"], ctr["http-crl"])
	}

	// Without crl.url nothing admits the mesh to either port.
	objs, _ = render(t, "meshca", "istio-system", nil)
	from = sources(t, objs)
	if _, ok := from["http-crl"]; ok || !reflect.DeepEqual(from["http-ops"], []any{prom}) {
		t.Errorf("without crl.url: %v", from)
	}
	// A crl.url from before crl.listen (the ops port) is refused: its
	// certificates would name a path no one serves. Other ports (a gateway
	// in front), digits in the path and IPv6 hosts are not taken for it.
	for u, refused := range map[string]bool{
		"http://meshca.istio-system.svc:15014/crl":  true,
		"http://[fd00::1]:015014/crl":               true,
		"https://crl.example.com:8443/crl":          false,
		"http://meshca/crl:15014/x":                 false,
		"http://meshca.istio-system.svc/crl":        false,
		"http://[fd00::1]:15016/crl":                false,
		"https://meshca.istio-system.svc:15016/crl": false,
	} {
		_, err := renderErr(t, "meshca", "istio-system", nil, "--set", "config.crl.url="+u)
		if refused != (err != nil) || refused && !strings.Contains(err.Error(), `config.crl.url "`+u+`" names the ops port 15014, but with config.crl.listen ":15016"`) {
			t.Errorf("crl.url %s: refused %v, err = %v", u, refused, err)
		}
	}
	// CRLs on the ops port (crl.listen emptied): the mesh is admitted there.
	objs, _ = render(t, "meshca", "istio-system", nil, "--set", "config.crl.url=http://meshca.istio-system.svc:15014/crl", "--set", "config.crl.listen=")
	from = sources(t, objs)
	if _, ok := from["http-crl"]; ok || !reflect.DeepEqual(from["http-ops"], []any{prom, mesh}) {
		t.Errorf("without crl.listen: %v", from)
	}
}

// The NetworkPolicy admits each port from its own source only: the Istio CA
// port from the mesh's namespaces, the ops port from Prometheus, the admin
// port from the configured namespace.
func TestChart_NetworkPolicyAdmitsEachPortFromItsSource(t *testing.T) {
	objs, _ := render(t, "meshca", "istio-system", []string{"../testdata/all-features.yaml"},
		"--set", "networkPolicy.meshNamespaceSelector.matchLabels.istio-injection=enabled",
		"--set", "networkPolicy.adminNamespace=ops")
	np := one(t, objs, "NetworkPolicy", "meshca")
	if got := path(np, "spec", "policyTypes"); !reflect.DeepEqual(got, []any{"Ingress"}) {
		t.Errorf("policyTypes = %v, want [Ingress]", got)
	}
	from := map[string]any{}
	for _, r := range path(np, "spec", "ingress").([]any) {
		ports := path(r, "ports").([]any)
		if len(ports) != 1 {
			t.Fatalf("ingress rule with %d ports, want one port per rule: %v", len(ports), r)
		}
		from[path(ports[0], "port").(string)] = path(r, "from")
	}
	want := map[string]any{
		"tls-grpc": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"istio-injection": "enabled"}}}},
		"http-ops": []any{map[string]any{
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}},
			"podSelector":       map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "prometheus"}},
		}},
		"tls-admin": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "ops"}}}},
	}
	if !reflect.DeepEqual(from, want) {
		t.Errorf("ingress sources by port:\n got %v\nwant %v", from, want)
	}
}
