// Package durability proves, with strace, that the meshca binary makes each
// issuance record durable (fsynced) before it acknowledges the certificate:
// before `meshca sign` prints the chain and before `meshca serve` writes the
// IstioCertificateService reply to the client's socket. A second binary,
// built with the meshca_nosync_check tag (bbolt NoSync), proves that the
// check reports a store that does not fsync.
//
// Killing the process (test/e2e TestCrashSafety) cannot show this: the
// kernel page cache survives a SIGKILL, so a store without fsync passes it.
package durability

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var (
	// meshcaBin is the real binary; noSyncBin is the same code with the
	// store's fsync removed (build tag meshca_nosync_check).
	meshcaBin, noSyncBin string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meshca-durability-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	meshcaBin = filepath.Join(dir, "meshca")
	noSyncBin = filepath.Join(dir, "meshca-nosync")
	for bin, tags := range map[string]string{meshcaBin: "", noSyncBin: "meshca_nosync_check"} {
		build := exec.Command("go", "build", "-tags", tags, "-o", bin, "github.com/meshca/meshca/cmd/meshca")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building meshca:", err)
			return 1
		}
	}
	return m.Run()
}
