package rootrotation

import (
	"context"
	"fmt"

	"github.com/meshca/meshca/ca/config"
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
	if err != nil || sameRoot(cfgRoot, rc) {
		return ""
	}
	state := "is in phase " + p.String()
	if p == PhaseDone {
		state = "is done"
	}
	return fmt.Sprintf("root rotation %s %s: the active intermediate chains to its new root (%s), but this configuration still names the old one (%s), and only a running meshca serve follows the rotation's journal. "+
		"Update the configuration (%s), or run this command while meshca serve runs", rec.ID, state, describeRoot(rc), describeRoot(cfgRoot), configKeys(rc))
}
