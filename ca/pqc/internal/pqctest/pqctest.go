// Package pqctest owns test-only access to the shared post-quantum test
// data in <repo root>/../shared/testdata/pqc: locating it, reading the
// hackathon zip archives, the RFC 9881 examples and the composite
// signature test vectors. Only _test.go files import it. A missing data
// directory fails the test loudly; it is never skipped.
package pqctest

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const modulePath = "github.com/meshca/meshca"

// Dir returns the absolute path of the shared pqc test data directory.
func Dir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("pqctest: getwd: %v", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(gomod), "module "+modulePath+"\n") {
			data := filepath.Join(dir, "..", "shared", "testdata", "pqc")
			if st, err := os.Stat(data); err != nil || !st.IsDir() {
				t.Fatalf("pqctest: shared PQ test data missing at %s (expected <repo root>/../shared/testdata/pqc): %v", data, err)
			}
			return data
		}
		if filepath.Dir(dir) == dir {
			t.Fatalf("pqctest: no go.mod for %s above %s", modulePath, wd)
		}
	}
}

// ReadFile reads a file below the data directory; a missing file fails t.
func ReadFile(t testing.TB, rel ...string) []byte {
	t.Helper()
	p := filepath.Join(append([]string{Dir(t)}, rel...)...)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("pqctest: %v", err)
	}
	return b
}

// PEM reads a file below the data directory and returns the DER bytes of
// its first PEM block.
func PEM(t testing.TB, rel ...string) []byte {
	t.Helper()
	block, _ := pem.Decode(ReadFile(t, rel...))
	if block == nil {
		t.Fatalf("pqctest: %s holds no PEM block", filepath.Join(rel...))
	}
	return block.Bytes
}

// Archive is the content of one hackathon zip, keyed by file base name.
type Archive map[string][]byte

// Zip reads hackathon-r5/<provider>.zip and returns its files keyed by base
// name (the archives hold one flat folder each).
func Zip(t testing.TB, provider string) Archive {
	t.Helper()
	raw := ReadFile(t, "hackathon-r5", provider+".zip")
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatalf("pqctest: %s.zip: %v", provider, err)
	}
	out := Archive{}
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatalf("pqctest: %s.zip/%s: %v", provider, f.Name, err)
		}
		b, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatalf("pqctest: %s.zip/%s: %v", provider, f.Name, err)
		}
		out[path.Base(f.Name)] = b
	}
	if len(out) == 0 {
		t.Fatalf("pqctest: %s.zip is empty", provider)
	}
	return out
}

// Names returns the sorted base names for which keep returns true.
func (a Archive) Names(keep func(name string) bool) []string {
	var names []string
	for name := range a {
		if keep(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// Vector is one draft-ietf-lamps-pq-composite-sigs-19 test vector, decoded.
type Vector struct {
	TcID         string // e.g. "id-MLDSA65-ECDSA-P256-SHA512" or "id-ML-DSA-65"
	PK           []byte
	X5C          []byte
	SK           []byte
	SKPKCS8      []byte
	S            []byte
	SWithContext []byte
}

// Name is TcID without the "id-" prefix.
func (v Vector) Name() string { return strings.TrimPrefix(v.TcID, "id-") }

// Vectors is the decoded composite-sigs-19-testvectors.json.
type Vectors struct {
	M, Ctx []byte
	Tests  []Vector
}

// LoadVectors reads and decodes the draft-19 test vectors.
func LoadVectors(t testing.TB) *Vectors {
	t.Helper()
	var raw struct {
		M, Ctx string
		Tests  []map[string]string
	}
	if err := json.Unmarshal(ReadFile(t, "composite-sigs-19-testvectors.json"), &raw); err != nil {
		t.Fatalf("pqctest: vectors: %v", err)
	}
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("pqctest: vectors: %v", err)
		}
		return b
	}
	v := &Vectors{M: dec(raw.M), Ctx: dec(raw.Ctx)}
	for _, tc := range raw.Tests {
		v.Tests = append(v.Tests, Vector{
			TcID: tc["tcId"], PK: dec(tc["pk"]), X5C: dec(tc["x5c"]), SK: dec(tc["sk"]),
			SKPKCS8: dec(tc["sk_pkcs8"]), S: dec(tc["s"]), SWithContext: dec(tc["sWithContext"]),
		})
	}
	return v
}
