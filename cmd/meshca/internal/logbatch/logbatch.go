// Package logbatch writes the process log of meshca serve as a group
// commit writes a journal: lines logged at the same moment share one
// write(2), and no line waits for a timer.
//
// Every log line used to be a write(2) of its own, under the lock of the
// slog handler. Under load that is one system call per issuance for the
// certificate.issued audit line alone, and the callers of one journal
// group, acknowledged together, queue on that lock to log one after the
// other. On a virtual machine, where a system call exits to the
// hypervisor, that costs as much as a good part of a certificate.
//
// A handler made by [Writer.Handler] still returns only once its line
// has been passed to write(2), as before: the audit line of an issuance
// is written before the reply, so a crash after the reply cannot lose it.
// What changes is who writes: the handler's encoder only appends the line
// to a buffer (under its lock, without a system call), and then the first
// waiting caller writes every line appended so far in one write(2), while
// the lines that arrive meanwhile wait for the next one.
package logbatch

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync"
)

// spareCap is the largest buffer kept for reuse after a batch.
const spareCap = 256 << 10

// Writer collects log lines for w. Write only appends; the lines reach w
// when a handler made by [Writer.Handler] returns, or on Flush and Close.
// It is safe for concurrent use.
type Writer struct {
	w io.Writer

	mu       sync.Mutex
	written  *sync.Cond // signalled after every batch
	pending  []byte
	spare    []byte
	appended uint64 // bytes appended so far
	done     uint64 // bytes of them handed to w (or dropped with a failed batch)
	writing  bool   // a caller is writing a batch, without mu
	closed   bool
}

// New returns a Writer for w.
func New(w io.Writer) *Writer {
	b := &Writer{w: w}
	b.written = sync.NewCond(&b.mu)
	return b
}

// Write appends p, which slog handlers make one whole line. After Close
// it writes p through.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.w.Write(p)
	}
	b.pending = append(b.pending, p...)
	b.appended += uint64(len(p))
	b.mu.Unlock()
	return len(p), nil
}

// Flush returns once everything appended before it has been handed to w:
// by this caller, in one write together with every line appended so
// far, or by another caller's batch. A failed write drops its batch, as
// an unbuffered logger drops its line, and is returned to the caller
// that made it.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	target := b.appended
	for b.done < target {
		if b.writing {
			b.written.Wait()
			continue
		}
		b.writing = true
		// Yield once before taking the batch: the callers of one journal
		// group are made runnable together, and those already runnable
		// on this P append their lines now instead of waiting for the
		// next write. On the peer benchmark (16 callers) this took the
		// write(2)s per issuance from 2.2 to 1.6.
		b.mu.Unlock()
		runtime.Gosched()
		b.mu.Lock()
		batch, end := b.pending, b.appended
		b.pending = b.spare[:0]
		b.mu.Unlock()
		_, err := b.w.Write(batch)
		b.mu.Lock()
		if cap(batch) <= spareCap {
			b.spare = batch[:0]
		} else {
			b.spare = nil
		}
		b.done = end
		b.writing = false
		b.written.Broadcast()
		if err != nil {
			return err
		}
	}
	return nil
}

// Close writes what is waiting; later writes go straight through.
func (b *Writer) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.Flush()
}

// Handler wraps h, whose output is this Writer, so that Handle returns
// only once its record has been written.
func (b *Writer) Handler(h slog.Handler) slog.Handler {
	return &handler{Handler: h, w: b}
}

type handler struct {
	slog.Handler
	w *Writer
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if ferr := h.w.Flush(); err == nil {
		err = ferr
	}
	return err
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{Handler: h.Handler.WithAttrs(as), w: h.w}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{Handler: h.Handler.WithGroup(name), w: h.w}
}
