package federation

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshca/meshca/ca/smallfile"
)

// maxStateBytes bounds a state file: a bundle within the fetch limit,
// base64-encoded in JSON.
const maxStateBytes = 4 * DefaultMaxBundleBytes

// Snapshot is the last good bundle of a foreign trust domain.
type Snapshot struct {
	TrustDomain string
	// FetchedAt is when it was last fetched successfully.
	FetchedAt time.Time
	Bundle    *spiffebundle.Bundle
}

// stateFile is a Snapshot on disk: the bundle in its SPIFFE JSON form.
type stateFile struct {
	TrustDomain string          `json:"trustDomain"`
	FetchedAt   time.Time       `json:"fetchedAt"`
	Bundle      json.RawMessage `json:"bundle"`
}

// stateSuffix ends every state file's name.
const stateSuffix = ".bundle.json"

// maxFileName is NAME_MAX, the longest file name of common file systems.
const maxFileName = 255

// statePath is the state file of td in dir. A trust domain name holds only
// [a-z0-9._-] (SPIFFE-ID §2.1) and comes from the configuration, so it is
// a safe file name with a suffix; a name too long for that (SPIFFE-ID §2.3
// allows 255 bytes) is replaced by "sha256-" and its hash (the file records
// the name it holds, checked on reading).
func statePath(dir string, td spiffeid.TrustDomain) string {
	name := td.Name()
	if len(name)+len(stateSuffix) > maxFileName {
		sum := sha256.Sum256([]byte(name))
		name = "sha256-" + hex.EncodeToString(sum[:])
	}
	return filepath.Join(dir, name+stateSuffix)
}

// ReadSnapshot reads the last good bundle of td kept in dir (federation.stateDir),
// checked as a fetch checks it (at the time it was fetched). It returns an
// error wrapping fs.ErrNotExist when none has been fetched yet.
func ReadSnapshot(dir string, td spiffeid.TrustDomain) (Snapshot, error) {
	b, err := smallfile.Read(statePath(dir, td), maxStateBytes)
	if err != nil {
		return Snapshot{}, err
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", statePath(dir, td), err)
	}
	if f.TrustDomain != td.Name() {
		return Snapshot{}, fmt.Errorf("%s holds the bundle of %q, not of %s", statePath(dir, td), f.TrustDomain, td)
	}
	bundle, err := spiffebundle.Parse(td, f.Bundle)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", statePath(dir, td), err)
	}
	// Only what a fetch would have accepted when it was made: a file
	// edited or left by something else must not be published.
	if err := checkAuthorities(td, bundle.X509Authorities(), f.FetchedAt); err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", statePath(dir, td), err)
	}
	return Snapshot{TrustDomain: td.Name(), FetchedAt: f.FetchedAt, Bundle: bundle}, nil
}

// writeSnapshot keeps s in dir: written to a temporary file (0600),
// fsynced, then renamed over the previous one, so that a crash leaves the
// old or the new bundle, never a torn one.
func writeSnapshot(dir string, td spiffeid.TrustDomain, s Snapshot) error {
	raw, err := s.Bundle.Marshal()
	if err != nil {
		return err
	}
	b, err := json.Marshal(stateFile{TrustDomain: td.Name(), FetchedAt: s.FetchedAt.UTC(), Bundle: raw})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".bundle-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), statePath(dir, td)); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// notFetched reports whether err means no bundle was kept yet.
func notFetched(err error) bool { return errors.Is(err, fs.ErrNotExist) }
