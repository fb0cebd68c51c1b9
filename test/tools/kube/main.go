// Command kube-apiserver is the upstream Kubernetes API server, built from
// source at the version pinned in go.mod so that meshca's integration tests
// run against a real apiserver (see test/tools/testbin.sh and test/kubeenv).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
