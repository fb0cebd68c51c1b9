// Package logbuf is a log sink for tests: a buffer that background loops
// write to while the test reads it.
package logbuf

import (
	"bytes"
	"io"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer safe for concurrent Write and String.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ForTest returns a writer to t's output that drops what is written once
// t's cleanups run. Libraries that log from goroutines they do not wait
// for (controller-runtime's manager logs "Stopping and waiting for warmup
// runnables" from one after Start has returned) would otherwise write to a
// completed test, which panics.
func ForTest(t testing.TB) io.Writer {
	w := &testWriter{w: t.Output()}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return w
}

type testWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}
