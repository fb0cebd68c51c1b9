// Command etcd is the upstream etcd server, built from source at the version
// pinned in go.mod as the storage backend of the test kube-apiserver (see
// test/tools/testbin.sh and test/kubeenv).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
