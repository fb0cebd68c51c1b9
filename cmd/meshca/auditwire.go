package main

import (
	"crypto/x509"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
)

// auditFile is serve's tamper-evident audit file (audit.file); nil when
// it is not configured, and every method is a no-op then.
type auditFile struct {
	f   *audit.File
	log *slog.Logger
}

// openAuditFile opens audit.file and returns the logger serve hands to
// every part: the same process log, whose audit loggers (audit.New) now
// also append to the file. Without audit.file it returns log unchanged.
func openAuditFile(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*slog.Logger, *auditFile, error) {
	a := cfg.Audit
	if !a.Enabled() {
		return log, nil, nil
	}
	f, err := audit.OpenFile(audit.FileOptions{
		Path:               a.File,
		MaxSize:            int64(a.MaxSizeMiB) << 20,
		MaxFiles:           a.MaxFiles,
		CheckpointInterval: a.CheckpointInterval.Duration,
		FlushInterval:      a.FlushInterval.Duration,
		Log:                log,
		Registerer:         reg,
	})
	if err != nil {
		return nil, nil, err
	}
	log.Info("audit file open", "file", a.File, "seq", f.Sequence(), "checkpoint_interval", a.CheckpointInterval.Duration.String())
	return slog.New(f.Tee(log.Handler())), &auditFile{f: f, log: log}, nil
}

// signWith has the checkpoints signed by rt's active intermediate (it
// follows rotations) and returns the function that seals the file with
// its shutdown checkpoint; serve defers it so that it runs while the key
// is still open.
func (a *auditFile) signWith(rt *authority.Runtime) func() {
	if a == nil {
		return func() {}
	}
	a.f.SetKey(func() (audit.CheckpointKey, error) {
		m := rt.Authority.Material()
		if m == nil {
			return audit.CheckpointKey{}, errors.New("no signing material")
		}
		return audit.CheckpointKey{Signer: m.Signer, Alt: m.AltSigner, Chain: append([]*x509.Certificate{m.Bundle.Cert}, m.Bundle.Intermediates...)}, nil
	})
	return a.close
}

// close seals (when a key is set) and closes the file; it may be called
// more than once.
func (a *auditFile) close() {
	if a == nil {
		return
	}
	if err := a.f.Close(); err != nil {
		a.log.Error("closing the audit file failed", "error", err)
	}
}
