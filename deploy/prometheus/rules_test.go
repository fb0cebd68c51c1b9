// Package prometheus_test checks meshca's PrometheusRule: its shape as the
// monitoring.coreos.com/v1 CRD, that every expression selects metrics that
// exist, and that every alert has promtool cases firing and not firing.
// promtool itself (make test-rules) parses and evaluates the rules.
package prometheus_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/deploy/prometheus/promexpr"
	"github.com/meshca/meshca/test/reporoot"
)

// prometheusRule is the part of prometheus-operator's PrometheusRule
// (monitoring.coreos.com/v1) meshca uses; unknown fields are refused.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func readRule(t *testing.T) (*prometheusRule, []byte) {
	t.Helper()
	b, err := os.ReadFile("meshca-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(b, &pr); err != nil {
		t.Fatalf("meshca-rules.yaml is not a PrometheusRule: %v", err)
	}
	return &pr, b
}

func TestPrometheusRule_HasTheCRDShape(t *testing.T) {
	pr, b := readRule(t)
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name == "" {
		t.Fatalf("apiVersion %q, kind %q, name %q; want monitoring.coreos.com/v1 PrometheusRule with a name", pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}
	seen := map[string]bool{}
	for _, g := range pr.Spec.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q has no name or no rules", g.Name)
		}
		for _, r := range g.Rules {
			switch {
			case r.Alert == "" || strings.TrimSpace(r.Expr) == "":
				t.Errorf("group %s: a rule without alert name or expr", g.Name)
			case seen[r.Alert]:
				t.Errorf("alert %s is defined twice", r.Alert)
			case r.Labels["severity"] != "warning" && r.Labels["severity"] != "critical":
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, r.Labels["severity"])
			case r.Annotations["summary"] == "" || r.Annotations["description"] == "":
				t.Errorf("alert %s: summary and description are required", r.Alert)
			}
			seen[r.Alert] = true
		}
	}
	// make test-rules hands promtool the lines after "spec:", de-indented:
	// spec must be the last top-level key.
	sc := bufio.NewScanner(bytes.NewReader(b))
	inSpec := false
	for sc.Scan() {
		line := sc.Text()
		top := line != "" && line[0] != ' ' && line[0] != '#'
		if inSpec && top {
			t.Fatalf("top-level %q after spec: spec must be the last key (make test-rules extracts it)", line)
		}
		if line == "spec:" {
			inSpec = true
		}
	}
	if !inSpec {
		t.Fatal("no top-level spec:")
	}
}

// TestPrometheusRule_SelectsOnlyMetricsThatExist: meshca_* names come from
// meshca's code, the others from Istio's (promexpr.IstioMetrics). The seed
// rules' istio_cert_expiry_timestamp, which nothing exports, is refused.
func TestPrometheusRule_SelectsOnlyMetricsThatExist(t *testing.T) {
	root, err := reporoot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	code, err := promexpr.CodeMetrics(root)
	if err != nil {
		t.Fatal(err)
	}
	if u := promexpr.Unknown(`istio_cert_expiry_timestamp - time()`, code); len(u) != 1 {
		t.Fatalf("the check let istio_cert_expiry_timestamp through: %q", u)
	}
	pr, _ := readRule(t)
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if len(promexpr.MetricNames(r.Expr)) == 0 {
				t.Errorf("alert %s selects no metric", r.Alert)
			}
			if u := promexpr.Unknown(r.Expr, code); len(u) > 0 {
				t.Errorf("alert %s uses metrics nothing exports: %q", r.Alert, u)
			}
		}
	}
}

// testCase is the part of a promtool test file this test reads.
type testFile struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// TestPrometheusRule_EveryAlertIsTestedFiringAndNot: each alert has a
// promtool case where it fires and one where it does not.
func TestPrometheusRule_EveryAlertIsTestedFiringAndNot(t *testing.T) {
	files, err := filepath.Glob("tests/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool tests in tests/: %v", err)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf testFile
		if err := yaml.Unmarshal(b, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(tf.RuleFiles) != 1 || tf.RuleFiles[0] != "meshca-rules.groups.yaml" {
			t.Errorf("%s: rule_files %q, want [meshca-rules.groups.yaml] (what make test-rules writes)", f, tf.RuleFiles)
		}
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					firing[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	pr, _ := readRule(t)
	var missing []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if !firing[r.Alert] {
				missing = append(missing, r.Alert+" (firing)")
			}
			if !quiet[r.Alert] {
				missing = append(missing, r.Alert+" (not firing)")
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("promtool cases missing: %s", strings.Join(missing, ", "))
	}
}
