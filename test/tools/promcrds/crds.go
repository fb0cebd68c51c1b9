//go:build tools

// Package promcrds generates prometheus-operator's ServiceMonitor and
// PrometheusRule CustomResourceDefinitions for the test apiserver (the
// chart tests in deploy/helm apply a ServiceMonitor and a PrometheusRule).
// prometheus-operator's Go module that the proxy serves holds only the API
// types (pkg/apis/monitoring), not the CRD manifests, so test/tools/testbin.sh
// runs controller-gen, the generator prometheus-operator itself uses, over
// those types at the pinned versions below and caches the result.
package promcrds

import _ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
