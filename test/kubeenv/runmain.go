package kubeenv

import (
	"fmt"
	"os"
	"testing"
)

// RunMain starts one control plane for a whole test package, stores it in
// *env, runs the tests and stops it. Use it from TestMain:
//
//	var env *kubeenv.Env
//
//	func TestMain(m *testing.M) { os.Exit(kubeenv.RunMain(m, &env)) }
//
// When the control plane cannot start (for example because `make testbin`
// has not been run) it prints why and returns 1: the tests fail, they are
// never skipped.
func RunMain(m *testing.M, env **Env, opts ...Option) int {
	e, err := Start(opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	*env = e
	defer e.Stop()
	return m.Run()
}
