// Command meshca is the certificate-lifecycle service for the Istio mesh.
// The commands are thin: each parses flags and calls into ca/, issuer/ or
// trustbundle/.
package main

import (
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
