package authority

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

// RootRequest describes a self-signed root for CreateRoot.
type RootRequest struct {
	CommonName   string
	Organization string
	Lifetime     time.Duration
	// KeyAlgorithm is the classical root key of the classical and catalyst
	// profiles. Composite and mldsa roots use intermediate.pqAlgorithm.
	KeyAlgorithm keys.Algorithm
	Now          time.Time
}

// CreateRoot creates a self-signed root for cfg's profile (meshca init, tests
// and benchmarks) and writes it where cfg.Root.File points, keys 0600:
//
//   - classical: a classical key in rootKey;
//   - catalyst: a classical key in rootKey and an ML-DSA key
//     (intermediate.pqAlgorithm) in rootPQKey; the root carries that key as
//     2.5.29.72 and is alt-signed by it, so the PQ chain anchors at the root;
//   - composite, mldsa: a composite or ML-DSA key in rootKey.
//
// It refuses to overwrite an existing file.
func CreateRoot(ctx context.Context, cfg *config.Config, req RootRequest) (*x509.Certificate, error) {
	f := cfg.Root.File
	p := cfg.Intermediate.Profile
	paths := []string{f.RootCert, f.RootKey}
	if p == profile.Catalyst {
		if f.RootPQKey == "" {
			return nil, errors.New("root.file.rootPQKey must be set to create a catalyst root")
		}
		paths = append(paths, f.RootPQKey)
	}
	for _, path := range paths {
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s already exists; refusing to overwrite it", path)
		}
	}
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	km, err := keys.Open(ctx, keys.Config{Type: "softkms", Dir: filepath.Dir(f.RootKey)})
	if err != nil {
		return nil, err
	}
	defer km.Close()
	tmp := ".root-" + strconv.FormatInt(req.Now.UnixNano(), 36)
	var key root.CAKey
	switch p {
	case profile.Composite, profile.MLDSA:
		s, path, err := km.CreatePQ(tmp, cfg.Intermediate.PQAlgorithm)
		if err != nil {
			return nil, err
		}
		key.Signer = s
		if err := os.Rename(path, f.RootKey); err != nil {
			return nil, err
		}
	default:
		s, path, err := km.Create(tmp, req.KeyAlgorithm)
		if err != nil {
			return nil, err
		}
		key.Signer = s
		if err := os.Rename(path, f.RootKey); err != nil {
			return nil, err
		}
		if p == profile.Catalyst {
			alt, path, err := km.CreatePQ(tmp+"-pq", cfg.Intermediate.PQAlgorithm)
			if err != nil {
				return nil, err
			}
			key.Alt = alt
			if err := os.MkdirAll(filepath.Dir(f.RootPQKey), 0o700); err != nil {
				return nil, err
			}
			if err := os.Rename(path, f.RootPQKey); err != nil {
				return nil, err
			}
		}
	}
	rc, err := root.NewRoot(key, req.CommonName, req.Organization, req.Lifetime, req.Now)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.RootCert, root.EncodePEM(rc), 0o644); err != nil {
		return nil, err
	}
	return rc, nil
}
