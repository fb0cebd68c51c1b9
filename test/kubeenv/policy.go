package kubeenv

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RefusalPolicy is a ValidatingAdmissionPolicy, with its binding, that
// refuses the requests it matches whose object does not satisfy
// Expression (CEL), with Message: what an admission webhook or a
// cluster's policy does to a write meshca makes.
type RefusalPolicy struct {
	Name       string
	Group      string   // API group of Resource ("" the core group)
	Resource   string   // e.g. certificaterequests/status
	Operations []string // e.g. CREATE, UPDATE
	Expression string
	Message    string
	// Namespace, when set, limits the binding to that namespace.
	Namespace string
}

// Refuse installs p until the test ends. kube-apiserver enforces a new
// policy only after a moment: probe a write it refuses before relying on
// it.
func (e *Env) Refuse(t testing.TB, p RefusalPolicy) {
	t.Helper()
	ops := make([]string, len(p.Operations))
	for i, o := range p.Operations {
		ops[i] = strconv.Quote(o)
	}
	binding := ""
	if p.Namespace != "" {
		binding = "\n  matchResources:\n    namespaceSelector:\n      matchLabels: {kubernetes.io/metadata.name: " + strconv.Quote(p.Namespace) + "}"
	}
	manifest := fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: %[1]q}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [%[2]q]
        apiVersions: ["*"]
        operations: [%[3]s]
        resources: [%[4]q]
  validations:
    - expression: %[5]q
      message: %[6]q
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: %[1]q}
spec:
  policyName: %[1]q
  validationActions: [Deny]%[7]s
`, p.Name, p.Group, strings.Join(ops, ", "), p.Resource, p.Expression, p.Message, binding)
	if _, err := e.ApplyYAML(context.Background(), []byte(manifest)); err != nil {
		t.Fatalf("kubeenv: admission policy %s: %v", p.Name, err)
	}
	t.Cleanup(func() { e.Unrefuse(p.Name) })
}

// Unrefuse removes the policy Refuse installed under name (no error when
// it is gone already).
func (e *Env) Unrefuse(name string) {
	ctx := context.Background()
	_ = e.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{})
	_ = e.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, name, metav1.DeleteOptions{})
}
