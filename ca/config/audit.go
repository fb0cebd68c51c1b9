package config

import (
	"path/filepath"
	"strings"
	"time"
)

// Audit file defaults and bounds.
const (
	DefaultAuditMaxSizeMiB         = 100
	DefaultAuditMaxFiles           = 10
	DefaultAuditCheckpointInterval = time.Minute
	DefaultAuditFlushInterval      = 200 * time.Millisecond
	MaxAuditMaxSizeMiB             = 10240
	MaxAuditMaxFiles               = 10000
	MinAuditCheckpointInterval     = time.Second
	MaxAuditCheckpointInterval     = 24 * time.Hour
	MinAuditFlushInterval          = 10 * time.Millisecond
	MaxAuditFlushInterval          = 10 * time.Second
)

// AuditConfig configures the tamper-evident audit file: every audit event
// (issued, denied, revoked, admin calls) also appended to File as a hash
// chain of JSON lines with checkpoints signed by the active intermediate.
// The events still go to the process log as well. Off when File is empty.
type AuditConfig struct {
	// File is the current audit file, e.g.
	// /var/lib/meshca/audit/audit.log; rotated files are File.<first
	// seq, 20 digits> next to it. Its directory is created 0700, the
	// files 0600.
	File string `json:"file,omitempty"`
	// MaxSizeMiB is the size at which the file is rotated; default 100.
	MaxSizeMiB int `json:"maxSizeMiB,omitempty"`
	// MaxFiles is how many rotated files are kept; default 10.
	MaxFiles int `json:"maxFiles,omitempty"`
	// CheckpointInterval is how often a signed checkpoint is written
	// when there were events since the last one; default 1m. The records
	// after the last checkpoint are covered by the hash chain only.
	CheckpointInterval Duration `json:"checkpointInterval,omitzero"`
	// FlushInterval is how often buffered records are written to the
	// file (no fsync; checkpoints and shutdown sync); default 200ms.
	FlushInterval Duration `json:"flushInterval,omitzero"`
}

// Enabled reports whether the audit file is configured.
func (a AuditConfig) Enabled() bool { return a.File != "" }

func (a *AuditConfig) resolvePath(base string) {
	if a.File != "" && !filepath.IsAbs(a.File) {
		a.File = filepath.Join(base, a.File)
	}
}

func (a *AuditConfig) init() {
	if a.MaxSizeMiB == 0 {
		a.MaxSizeMiB = DefaultAuditMaxSizeMiB
	}
	if a.MaxFiles == 0 {
		a.MaxFiles = DefaultAuditMaxFiles
	}
	if a.CheckpointInterval.Duration == 0 {
		a.CheckpointInterval.Duration = DefaultAuditCheckpointInterval
	}
	if a.FlushInterval.Duration == 0 {
		a.FlushInterval.Duration = DefaultAuditFlushInterval
	}
}

func (a AuditConfig) validate(add func(string, string, ...any)) {
	if !a.Enabled() {
		return
	}
	if base := filepath.Base(a.File); strings.HasSuffix(a.File, "/") || base == "." || base == ".." {
		add("audit.file", "%q is not a file name; use a file in a directory of its own, e.g. /var/lib/meshca/audit/audit.log", a.File)
	}
	if a.MaxSizeMiB < 1 || a.MaxSizeMiB > MaxAuditMaxSizeMiB {
		add("audit.maxSizeMiB", "%d is out of range; use 1 to %d (default %d)", a.MaxSizeMiB, MaxAuditMaxSizeMiB, DefaultAuditMaxSizeMiB)
	}
	if a.MaxFiles < 1 || a.MaxFiles > MaxAuditMaxFiles {
		add("audit.maxFiles", "%d is out of range; use 1 to %d rotated files kept (default %d)", a.MaxFiles, MaxAuditMaxFiles, DefaultAuditMaxFiles)
	}
	ci, fi := a.CheckpointInterval.Duration, a.FlushInterval.Duration
	if ci < MinAuditCheckpointInterval || ci > MaxAuditCheckpointInterval {
		add("audit.checkpointInterval", "%s is out of range; use %s to %s (default %s): every checkpoint is a signature by the intermediate", ci, MinAuditCheckpointInterval, MaxAuditCheckpointInterval, DefaultAuditCheckpointInterval)
	}
	if fi < MinAuditFlushInterval || fi > MaxAuditFlushInterval || fi > ci {
		add("audit.flushInterval", "%s is out of range; use %s to %s and at most audit.checkpointInterval (default %s)", fi, MinAuditFlushInterval, MaxAuditFlushInterval, DefaultAuditFlushInterval)
	}
}
