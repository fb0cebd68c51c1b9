package rootrotation

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// OfflineHint explains why a command that opens the CA read-only from the
// configuration (meshca sign and meshca cacerts without a running serve)
// finds no usable generation during or after a root rotation: from the
// switch on, new intermediates chain to the new root the journal holds,
// and only meshca serve follows the journal while the configuration still
// names the old root. It says which keys to update. It is empty when the
// journal explains nothing (no rotation, none past its switch, or a
// configuration that already names the new root) or cannot be read.
func OfflineHint(ctx context.Context, st store.Store, cfgRoot config.RootConfig) string {
	j, ok := st.(store.RootRotations)
	if !ok {
		return ""
	}
	rec, err := j.GetRootRotation(ctx)
	if err != nil {
		return ""
	}
	p := Phase(rec.Phase)
	if !p.Valid() || !p.underNew() {
		return ""
	}
	rc, err := decodeRootConfig(rec.NewRootSource)
	if err != nil || sameRoot(cfgRoot, rc) || holdsRoot(cfgRoot, rec.NewRootDER) {
		return ""
	}
	state := "is in phase " + p.String()
	if p == PhaseDone {
		state = "is done"
	}
	return fmt.Sprintf("root rotation %s %s: the active intermediate chains to its new root (%s), but this configuration still names the old one (%s), and only a running meshca serve follows the rotation's journal. "+
		"Update the configuration (%s), or run this command while meshca serve runs", rec.ID, state, describeRoot(rc), describeRoot(cfgRoot), configKeys(rc))
}

// holdsRoot reports whether the configured root file holds the root der
// (B's files copied over A's path): then the configuration names B.
func holdsRoot(rc config.RootConfig, der []byte) bool {
	if rc.Source == config.RootSourceVault || rc.File.RootCert == "" || len(der) == 0 {
		return false
	}
	b, err := os.ReadFile(rc.File.RootCert)
	if err != nil {
		return false
	}
	certs, err := root.ParseCertificates(b)
	if err != nil {
		return false
	}
	for _, c := range certs {
		if bytes.Equal(c.Raw, der) {
			return true
		}
	}
	return false
}
