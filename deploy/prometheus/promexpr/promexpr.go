// Package promexpr checks the PromQL that meshca ships (the PrometheusRule
// in deploy/prometheus and the Grafana dashboard in deploy/grafana) against
// the metrics that exist: it lists the metric names an expression selects
// and the meshca_* metric names meshca's code defines. It is used by tests
// only and holds no PromQL engine: promtool parses and evaluates the rules.
package promexpr

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// IstioMetrics are the Istio metrics meshca's rules and dashboard may use,
// each checked against Istio's source: istiod's CA gauges
// (security/pkg/server/ca/monitoring.go) and the proxies' standard request
// metric (https://istio.io/latest/docs/reference/config/metrics/).
var IstioMetrics = map[string]bool{
	"citadel_server_root_cert_expiry_timestamp":  true,
	"citadel_server_cert_chain_expiry_timestamp": true,
	"istio_requests_total":                       true,
}

// keywords are PromQL words that are not metric names.
var keywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true,
}

var (
	stringLit = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	matchers  = regexp.MustCompile(`\{[^{}]*\}`)
	ranges    = regexp.MustCompile(`\[[^\[\]]*\]`)
	// A grouping clause and its label list: by (a, b), on(), group_left (x).
	grouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	ident    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
)

// MetricNames returns the metric names expr selects, sorted and without
// repeats: the identifiers left once strings, label matchers, ranges,
// grouping label lists, function calls, keywords and numbers are removed.
// Grafana variables ($__rate_interval, ${x}) are removed first.
func MetricNames(expr string) []string {
	s := stringLit.ReplaceAllString(expr, `""`)
	s = regexp.MustCompile(`\$\{[^}]*\}|\$[A-Za-z_]+`).ReplaceAllString(s, "1")
	s = matchers.ReplaceAllString(s, " ")
	s = ranges.ReplaceAllString(s, " ")
	s = grouping.ReplaceAllString(s, " ")
	seen := map[string]bool{}
	for _, loc := range ident.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if keywords[strings.ToLower(name)] {
			continue
		}
		if loc[0] > 0 && (isDigit(s[loc[0]-1]) || s[loc[0]-1] == '.') {
			continue // the exponent or unit of a number: 1e3, 5m
		}
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") {
			continue // a function
		}
		seen[name] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

var metricLiteral = regexp.MustCompile(`"(meshca_[a-z0-9_]+)"`)

// CodeMetrics returns the meshca_* names defined in the non-test Go files
// of the module at root (test/ excluded), with the _bucket, _sum and
// _count series of each, since any of them may be a histogram.
func CodeMetrics(root string) (map[string]bool, error) {
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "test", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range metricLiteral.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				out[m[1]+suffix] = true
			}
		}
		return nil
	})
	return out, err
}

// Unknown returns the names of expr that are neither in code nor in
// IstioMetrics.
func Unknown(expr string, code map[string]bool) []string {
	var out []string
	for _, n := range MetricNames(expr) {
		if !code[n] && !IstioMetrics[n] {
			out = append(out, n)
		}
	}
	return out
}
