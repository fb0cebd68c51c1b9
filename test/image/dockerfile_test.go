//go:build imagecheck

// Package image_test checks the container image recipe (Dockerfile) without
// a container engine, which does not run on the development machines: it
// runs the build stage's go build command verbatim and checks the binary it
// makes, and it checks that the stages agree with each other and with the
// Go toolchain that builds meshca here.
//
// It runs under `make test-image` (part of `make test`) with the build tag
// imagecheck and a 30-minute timeout: the first cgo -trimpath build of every
// dependency takes longer than go test's default 10 minutes on 2 busy cores.
package image_test

import (
	"bufio"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/meshca/meshca/test/reporoot"
)

// buildMarker precedes the build stage's go build RUN line.
const buildMarker = "# meshca:go-build"

// dockerfile is what the tests read from the Dockerfile.
type dockerfile struct {
	build   string            // the go build command of the marked RUN line
	args    map[string]string // ARG defaults
	froms   []string          // FROM lines, in order
	user    string
	outPath string // the -o path of the go build command
}

func readDockerfile(t *testing.T) (dockerfile, string) {
	t.Helper()
	root, err := reporoot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := dockerfile{args: map[string]string{}}
	marked := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, buildMarker):
			marked = true
			continue
		case marked:
			cmd, ok := strings.CutPrefix(line, "RUN ")
			if !ok || strings.HasSuffix(cmd, "\\") {
				t.Fatalf("the line after %q must be one RUN line, got %q", buildMarker, line)
			}
			d.build = cmd
		case strings.HasPrefix(line, "ARG "):
			if k, v, ok := strings.Cut(strings.TrimPrefix(line, "ARG "), "="); ok {
				d.args[k] = v
			}
		case strings.HasPrefix(line, "FROM "):
			d.froms = append(d.froms, strings.TrimPrefix(line, "FROM "))
		case strings.HasPrefix(line, "USER "):
			d.user = strings.TrimPrefix(line, "USER ")
		}
		marked = false
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if d.build == "" {
		t.Fatalf("Dockerfile has no RUN line after %q", buildMarker)
	}
	fields := strings.Fields(d.build)
	for i, f := range fields {
		if f == "-o" && i+1 < len(fields) {
			d.outPath = fields[i+1]
		}
	}
	if d.outPath == "" {
		t.Fatalf("the go build line %q has no -o PATH", d.build)
	}
	return d, root
}

// glibc is every library of Debian's libc6, which
// gcr.io/distroless/base-debian12 carries; nothing else may be needed.
var glibc = []string{"libc.so.6", "libdl.so.2", "libpthread.so.0", "libm.so.6", "libresolv.so.2", "librt.so.1"}

// The build stage's exact go build command makes a meshca that has the
// PKCS#11 key manager compiled in (cgo), links nothing but glibc (which the
// distroless base image has), carries the intended flags, and runs.
func TestDockerfile_BuildStageMakesAPKCS11CapableMeshcaThatNeedsOnlyGlibc(t *testing.T) {
	d, root := readDockerfile(t)
	out := filepath.Join(t.TempDir(), "meshca")
	cmd := exec.Command("sh", "-c", strings.Replace(d.build, d.outPath, out, 1))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build command failed: %v\n%s", err, b)
	}

	bi, err := buildinfo.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	// -ldflags is not recorded under -trimpath (it may hold paths); its
	// -s -w shows below as missing symbol and DWARF sections.
	for k, v := range map[string]string{"CGO_ENABLED": "1", "-trimpath": "true"} {
		if settings[k] != v {
			t.Errorf("build setting %s = %q, want %q", k, settings[k], v)
		}
	}
	// kms/pkcs11's cgo implementation imports crypto11 and miekg/pkcs11;
	// its !cgo stub imports neither.
	if !slices.ContainsFunc(bi.Deps, func(m *debug.Module) bool { return m.Path == "github.com/miekg/pkcs11" }) {
		t.Error("github.com/miekg/pkcs11 is not linked: the image could not use an HSM (keyStore.type pkcs11)")
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		t.Error("the binary has no ELF interpreter: it is static and cannot dlopen a PKCS#11 module")
	}
	for _, sec := range []string{".symtab", ".debug_info"} {
		if f.Section(sec) != nil {
			t.Errorf("the binary has %s: the build was not stripped (-ldflags=\"-s -w\")", sec)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		if !slices.Contains(glibc, l) {
			t.Errorf("the binary needs %s, which gcr.io/distroless/base-debian12 does not have (only glibc)", l)
		}
	}

	help, err := exec.Command(out, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "meshca serve") {
		t.Errorf("the built meshca --help: %v\n%s", err, help)
	}
}

// The stages agree: the build stage uses the Go version that builds meshca
// here and the same Debian release (glibc) as the runtime image, which is
// distroless and runs as the non-root user the chart runs the pod as.
func TestDockerfile_StagesMatchTheToolchainAndRunAsNonRoot(t *testing.T) {
	d, _ := readDockerfile(t)
	if got, want := d.args["GO_VERSION"], strings.TrimPrefix(runtime.Version(), "go"); got != want {
		t.Errorf("Dockerfile ARG GO_VERSION=%s, but meshca is built and tested with Go %s: update the ARG", got, want)
	}
	want := []string{"docker.io/library/golang:${GO_VERSION}-bookworm AS build", "gcr.io/distroless/base-debian12:nonroot"}
	if !slices.Equal(d.froms, want) {
		t.Errorf("FROM lines = %q, want %q (Debian 12 bookworm in both stages: one glibc)", d.froms, want)
	}
	if d.user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532 (distroless nonroot; the chart's runAsUser)", d.user)
	}
}
