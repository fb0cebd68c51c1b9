// Package reporoot finds the meshca checkout a test runs in, so that test
// helpers can reach bin/, deploy/ and test/ whatever package they run from.
package reporoot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
)

const moduleLine = "module github.com/meshca/meshca\n"

// Dir walks up from the working directory to the folder holding meshca's
// go.mod (nested tool modules under test/ have their own go.mod and are
// passed over).
func Dir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte(moduleLine)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/meshca/meshca above the working directory")
		}
		dir = parent
	}
}
