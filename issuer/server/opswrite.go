package server

import (
	"net/http"
	"time"
)

// A response on the operations port may be large (a CRL of tens of MB to
// a relying party on a slow link): its write deadline grows with the
// bytes written, at opsMinWriteRate, above server.limits.opsWriteTimeout,
// and never beyond opsMaxWriteTime after the handler started.
const (
	opsMinWriteRate = 64 << 10 // bytes per second
	opsMaxWriteTime = 10 * time.Minute
	opsWriteChunk   = 256 << 10
)

// sizedDeadlineWriter moves the connection's write deadline before each
// write to start + base + written/opsMinWriteRate (bounded), through
// http.ResponseController, so that a large body is not cut by the
// listener's write timeout while a stalled reader still is.
type sizedDeadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	start   time.Time
	base    time.Duration
	written int64
}

func (w *sizedDeadlineWriter) Write(p []byte) (int, error) {
	// http.ServeContent hands over a whole body in one Write: it is
	// written in chunks, each with its own deadline, so that a reader
	// slower than opsMinWriteRate is still cut.
	total := 0
	for len(p) > 0 {
		n := min(len(p), opsWriteChunk)
		w.written += int64(n)
		d := min(w.base+time.Duration(w.written)*time.Second/opsMinWriteRate, opsMaxWriteTime)
		if d > w.base {
			// An error means the writer cannot move deadlines; the
			// listener's write timeout stays.
			_ = w.rc.SetWriteDeadline(w.start.Add(d))
		}
		m, err := w.ResponseWriter.Write(p[:n])
		total += m
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

// Unwrap lets http.ResponseController (and http.ServeContent's callers)
// reach the server's writer.
func (w *sizedDeadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
