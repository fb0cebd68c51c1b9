// Package e2e runs the real meshca binary as operators do: init, serve,
// sign, cacerts, crash and restart.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// meshcaBin is the binary built once for the package.
var meshcaBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meshca-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	meshcaBin = filepath.Join(dir, "meshca")
	build := exec.Command("go", "build", "-o", meshcaBin, "github.com/meshca/meshca/cmd/meshca")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building meshca:", err)
		return 1
	}
	return m.Run()
}
