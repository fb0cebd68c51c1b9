// Package pqverifier builds the independent post-quantum verifier in
// test/pqverify with the Go 1.27 toolchain (fetched from the module proxy
// through GOTOOLCHAIN) for tests. A newer toolchain appears only here, as a
// verifier of meshca's output; meshca itself builds with the installed Go.
package pqverifier

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshca/meshca/test/reporoot"
)

// Toolchain is the Go release used as the independent verifier.
const Toolchain = "go1.27.0"

var (
	once     sync.Once
	built    string
	buildErr error
	skipWhy  string
)

// Build returns the path of the test/pqverify binary, building it once per
// test process. When the toolchain cannot be had it skips the test LOUDLY,
// saying what is then left unchecked; a build failure fails the test.
func Build(t testing.TB, unchecked string) string {
	t.Helper()
	if testing.Short() {
		t.Skip(banner("-short given", unchecked))
	}
	once.Do(build)
	if skipWhy != "" {
		t.Skip(banner(skipWhy, unchecked))
	}
	if buildErr != nil {
		t.Fatalf("build test/pqverify with %s: %v", Toolchain, buildErr)
	}
	return built
}

func banner(why, unchecked string) string {
	return "\n\n" +
		"******************************************************************\n" +
		"*** SKIPPING INDEPENDENT VERIFICATION BY " + Toolchain + "\n" +
		"*** " + why + "\n" +
		"*** " + unchecked + "\n" +
		"*** Fetch the toolchain with:\n" +
		"***   cd test/pqverify && GOTOOLCHAIN=" + Toolchain + " go version\n" +
		"******************************************************************\n"
}

func build() {
	goBin, err := exec.LookPath("go")
	if err != nil {
		skipWhy = "no go command on PATH"
		return
	}
	dir, err := verifierDir()
	if err != nil {
		buildErr = err
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := append(os.Environ(), "GOTOOLCHAIN="+Toolchain, "GOWORK=off")
	probe := exec.CommandContext(ctx, goBin, "version")
	probe.Dir, probe.Env = dir, env
	out, err := probe.CombinedOutput()
	if err != nil || !strings.Contains(string(out), Toolchain) {
		skipWhy = "the toolchain could not be fetched: " + strings.TrimSpace(string(out))
		return
	}
	tmp, err := os.MkdirTemp("", "meshca-pqverify-")
	if err != nil {
		buildErr = err
		return
	}
	bin := filepath.Join(tmp, "pqverify")
	b := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".")
	b.Dir, b.Env = dir, env
	if out, err := b.CombinedOutput(); err != nil {
		buildErr = errors.New(strings.TrimSpace(string(out)))
		return
	}
	built = bin
}

// verifierDir is test/pqverify in the checkout.
func verifierDir() (string, error) {
	dir, err := reporoot.Dir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "test", "pqverify"), nil
}
