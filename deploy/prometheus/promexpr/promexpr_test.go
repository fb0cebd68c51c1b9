package promexpr_test

import (
	"reflect"
	"testing"

	"github.com/meshca/meshca/deploy/prometheus/promexpr"
	"github.com/meshca/meshca/test/reporoot"
)

func TestMetricNames_FindsSelectorsOnly(t *testing.T) {
	tests := map[string]struct {
		expr string
		want []string
	}{
		"plain":         {`up`, []string{"up"}},
		"matchers":      {`rate(istio_requests_total{reporter="destination", response_code=~"4.*"}[5m])`, []string{"istio_requests_total"}},
		"grouping":      {`sum by (destination_workload, le) (rate(a_bucket[$__rate_interval])) / on(job) group_left(instance) b`, []string{"a_bucket", "b"}},
		"arith":         {`(x_seconds - time()) < 7 * 86400 and y >= 1e3`, []string{"x_seconds", "y"}},
		"label_replace": {`label_replace(z > 0, "certificate", "root", "", "")`, []string{"z"}},
		"variables":     {`histogram_quantile(0.99, sum by (le) (rate(h_bucket{profile=~"${profile}"}[$__rate_interval])))`, []string{"h_bucket"}},
		"offset":        {`c offset 1h`, []string{"c"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := promexpr.MetricNames(tc.expr); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("MetricNames(%q) = %q, want %q", tc.expr, got, tc.want)
			}
		})
	}
}

// TestCodeMetrics_FindsMeshCAMetrics: names defined in three packages (a
// NewDesc, a CounterOpts and a constant) are found, histogram series too.
func TestCodeMetrics_FindsMeshCAMetrics(t *testing.T) {
	root, err := reporoot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	code, err := promexpr.CodeMetrics(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"meshca_certificate_not_after_timestamp_seconds", "meshca_crl_publish_errors_total",
		"meshca_tokenreview_requests_total", "meshca_sign_duration_seconds_bucket"} {
		if !code[n] {
			t.Errorf("%s not found in the code", n)
		}
	}
	if code["meshca_cert_expiry_timestamp"] {
		t.Error("meshca_cert_expiry_timestamp found, but meshca defines no such metric")
	}
}
