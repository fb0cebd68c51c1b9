package audit

import (
	"context"
	"log/slog"
)

// The audit Logger marks its lines with this attribute (New adds it);
// Tee recognizes audit records by it.
const (
	logKey   = "log"
	logValue = "audit"
)

// Tee returns a handler that passes every record to inner, as before,
// and also appends the audit records (those of loggers made by New from
// a logger using this handler) to f, whatever inner's level: the audit
// file records every decision even when the process log is quieter.
func (f *File) Tee(inner slog.Handler) slog.Handler {
	return &tee{inner: inner, file: f, enc: f.evh}
}

type tee struct {
	inner slog.Handler
	file  *File
	// enc encodes the record for the file, with the logger's attributes
	// and groups; it writes into the file's scratch buffer under its lock.
	enc   slog.Handler
	audit bool
}

func (t *tee) Enabled(ctx context.Context, l slog.Level) bool {
	return t.audit || t.inner.Enabled(ctx, l)
}

func (t *tee) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if t.inner.Enabled(ctx, r.Level) {
		err = t.inner.Handle(ctx, r)
	}
	if t.audit {
		t.file.writeEvent(ctx, t.enc, r)
	}
	return err
}

func (t *tee) WithAttrs(as []slog.Attr) slog.Handler {
	n := *t
	n.inner, n.enc = t.inner.WithAttrs(as), t.enc.WithAttrs(as)
	for _, a := range as {
		if a.Key == logKey && a.Value.Kind() == slog.KindString && a.Value.String() == logValue {
			n.audit = true
		}
	}
	return &n
}

func (t *tee) WithGroup(name string) slog.Handler {
	n := *t
	n.inner, n.enc = t.inner.WithGroup(name), t.enc.WithGroup(name)
	return &n
}
