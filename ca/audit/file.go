package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// File defaults.
const (
	DefaultMaxSize            = 100 << 20
	DefaultMaxFiles           = 10
	DefaultCheckpointInterval = time.Minute
	DefaultFlushInterval      = 200 * time.Millisecond
	// flushAt writes the buffer out before the interval when it holds
	// this much; maxPending bounds it while writes fail (a full disk):
	// records beyond it are dropped, never half-chained.
	flushAt    = 64 << 10
	maxPending = 8 << 20
	// maxField bounds a string field of an event in the file.
	maxField = 16 << 10
)

// FileOptions configure an audit file.
type FileOptions struct {
	// Path is the current file; rotated files are Path.<first seq, 20
	// digits> next to it.
	Path string
	// MaxSize is the size at which the file is rotated (it may exceed it
	// by the final checkpoint); default DefaultMaxSize.
	MaxSize int64
	// MaxFiles is how many rotated files are kept; default DefaultMaxFiles.
	MaxFiles int
	// CheckpointInterval is how often a signed checkpoint is written
	// when records were added since the last one.
	CheckpointInterval time.Duration
	// FlushInterval is how often buffered records are written to the
	// file (without fsync; checkpoints and Close sync).
	FlushInterval time.Duration
	Clock         clock.WithTicker
	// Log receives operational messages (a torn tail found at start,
	// write errors); nil means slog.Default().
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// File is the tamper-evident audit file: a hash chain of JSON lines with
// signed checkpoints (record.go, checkpoint.go), buffered, rotated by
// size, continued across restarts. It is safe for concurrent use.
type File struct {
	o    FileOptions
	dir  string
	base string
	m    *fileMetrics

	mu       sync.Mutex
	f        *os.File
	size     int64 // bytes of the current file, buffered ones included
	firstSeq uint64
	seq      uint64
	prev     [sha256.Size]byte
	since    int // records since the last checkpoint
	lastCP   time.Time
	pending  []byte
	line     []byte
	ev       bytes.Buffer
	evh      slog.Handler
	key      KeySource
	failing  bool
	// retryRotateAt delays the next rotation after a failed one.
	retryRotateAt int64
	closed        bool

	// lock is held while the file is open: one writer per chain.
	lock *os.File

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// OpenFile opens (or creates) the audit file and continues its chain: a
// new chain starts with a start record; an existing one with a restart
// record naming whether the previous run ended with its shutdown
// checkpoint. A torn last line (a crash mid-write) is never extended: the
// file is rotated aside as it is, and the new file's restart record
// gives the torn bytes' length and SHA-256.
func OpenFile(o FileOptions) (*File, error) {
	if o.Path == "" {
		return nil, errors.New("audit: no file")
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	f := &File{o: o, dir: filepath.Dir(o.Path), base: filepath.Base(o.Path), m: newFileMetrics(o.Registerer)}
	f.evh = slog.NewJSONHandler(&f.ev, &slog.HandlerOptions{ReplaceAttr: renameReserved})
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := f.takeLock(); err != nil {
		return nil, err
	}
	if err := f.resume(); err != nil {
		if f.f != nil {
			f.f.Close()
		}
		f.lock.Close()
		return nil, err
	}
	f.lastCP = o.Clock.Now()
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go f.run()
	return f, nil
}

// SetKey sets where checkpoint keys come from. Until it is set no
// checkpoint is written.
func (f *File) SetKey(k KeySource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.key = k
}

// Sequence returns the seq of the last record.
func (f *File) Sequence() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq
}

// Close writes the shutdown checkpoint, flushes, syncs and closes the
// file. Further events are dropped.
func (f *File) Close() error {
	f.closeOnce.Do(func() {
		close(f.stop)
		<-f.done
		f.mu.Lock()
		defer f.mu.Unlock()
		f.checkpointLocked(CheckpointShutdown)
		err := f.syncLocked()
		f.closed = true
		f.closeErr = errors.Join(err, f.f.Close(), f.lock.Close())
	})
	return f.closeErr
}

// run flushes every FlushInterval and checkpoints every
// CheckpointInterval when there is something to sign.
func (f *File) run() {
	defer close(f.done)
	t := f.o.Clock.NewTicker(f.o.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C():
		}
		f.mu.Lock()
		cp := f.since > 0 && f.o.Clock.Since(f.lastCP) >= f.o.CheckpointInterval
		if cp {
			f.checkpointLocked(CheckpointInterval)
			// Without a key, or when signing failed (logged), the next
			// try is an interval later, not at every flush.
			f.lastCP = f.o.Clock.Now()
		}
		f.flushLocked()
		w := f.f
		f.mu.Unlock()
		if cp {
			f.syncUnlocked(w)
		}
	}
}

// syncUnlocked fsyncs w, which holds the flushed records, without the
// lock: writers (and the issuances waiting on their audit line) go on
// while a slow disk syncs. A rotation meanwhile syncs and closes w
// itself (os.File keeps the descriptor valid until Sync returns).
func (f *File) syncUnlocked(w *os.File) {
	err := fsync(w)
	if err == nil || errors.Is(err, os.ErrClosed) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writeFailed("syncing", err)
}

// writeEvent appends an event record: the JSON object h makes of r, with
// the chain members in front.
func (f *File) writeEvent(ctx context.Context, h slog.Handler, r slog.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.ev.Reset()
	if err := h.Handle(ctx, r); err != nil {
		f.o.Log.Error("audit file: encoding an event failed", "error", err)
		return
	}
	out := f.ev.Bytes()
	if len(out) < 3 || out[0] != '{' || out[len(out)-1] != '\n' {
		return
	}
	if f.seq > f.firstSeq && f.size+int64(len(out))+128 > f.o.MaxSize && f.size >= f.retryRotateAt {
		if err := f.rotateLocked(); err != nil {
			// Keep writing to the current file; try again after another
			// quarter of MaxSize, not on every event.
			f.retryRotateAt = f.size + f.o.MaxSize/4
			f.writeFailed("rotating", err)
		}
	}
	f.line = appendHead(f.line[:0], f.seq+1, &f.prev, KindEvent)
	f.line = append(f.line, out[1:len(out)-1]...)
	f.appendLocked(f.line, KindEvent)
}

// renameReserved writes an event's top-level attribute named like a
// member of the record's head (a revocation's "kind") as event_<name>, so
// that each member name of the line is unique (RFC 8259 section 4) and
// every JSON tool reads the record's own kind.
// It also cuts a string value longer than maxField (a message quoting
// caller input), so that a record stays far below maxLine, which verify
// and a restart read.
func renameReserved(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 {
		switch a.Key {
		case "seq", "prev", "kind":
			a.Key = "event_" + a.Key
		}
	}
	if a.Value.Kind() == slog.KindString {
		if v := a.Value.String(); len(v) > maxField {
			cut := maxField
			for cut > 0 && !utf8.RuneStart(v[cut]) {
				cut--
			}
			a.Value = slog.StringValue(v[:cut] + "… (cut: " + strconv.Itoa(len(v)) + " bytes)")
		}
	}
	return a
}

// appendLocked adds one record to the chain.
func (f *File) appendLocked(line []byte, kind string) {
	if len(f.pending)+len(line) > maxPending {
		f.m.dropped.Inc()
		return
	}
	f.seq++
	f.prev = sha256.Sum256(line)
	f.pending = append(append(f.pending, line...), '\n')
	f.size += int64(len(line)) + 1
	f.m.records.WithLabelValues(kind).Inc()
	f.m.sequence.Set(float64(f.seq))
	if kind != KindCheckpoint {
		f.since++
	}
	if len(f.pending) >= flushAt {
		f.flushLocked()
	}
}

// checkpointLocked signs a checkpoint over the chain so far.
func (f *File) checkpointLocked(reason string) {
	if f.key == nil {
		f.o.Log.Warn("audit file: no checkpoint key yet; the records since the last checkpoint stay unsigned", "reason", reason)
		return
	}
	k, err := f.key()
	now := f.o.Clock.Now()
	var line []byte
	if err == nil {
		line, err = appendCheckpoint(f.line[:0], k, f.seq+1, &f.prev, now, reason)
	}
	if err != nil {
		f.m.checkpointErrors.Inc()
		f.o.Log.Error("audit file: signing a checkpoint failed; the records since the last one stay unsigned", "reason", reason, "error", err)
		return
	}
	f.line = line
	f.appendLocked(line, KindCheckpoint)
	f.since = 0
	f.lastCP = now
	f.m.checkpointSeq.Set(float64(f.seq))
	f.m.checkpointTime.Set(float64(now.Unix()))
}

// flushLocked writes the buffered records (whole lines, no fsync).
func (f *File) flushLocked() {
	if len(f.pending) == 0 {
		return
	}
	n, err := f.f.Write(f.pending)
	f.pending = f.pending[:copy(f.pending, f.pending[n:])]
	if err != nil {
		f.writeFailed("writing", err)
		return
	}
	if f.failing {
		f.failing = false
		f.o.Log.Info("audit file: writing works again", "file", f.o.Path)
	}
}

// fsync is (*os.File).Sync; tests slow it down.
var fsync = (*os.File).Sync

func (f *File) syncLocked() error {
	f.flushLocked()
	if err := fsync(f.f); err != nil {
		f.writeFailed("syncing", err)
		return err
	}
	return nil
}

// writeFailed counts a write error and logs the first of a series.
func (f *File) writeFailed(what string, err error) {
	f.m.writeErrors.Inc()
	if !f.failing {
		f.failing = true
		f.o.Log.Error("audit file: "+what+" failed; records are buffered (up to 8 MiB) and written when it works again", "file", f.o.Path, "error", err)
	}
}

type fileMetrics struct {
	records                 *prometheus.CounterVec
	dropped, writeErrors    prometheus.Counter
	checkpointErrors        prometheus.Counter
	sequence, checkpointSeq prometheus.Gauge
	checkpointTime          prometheus.Gauge
}

func newFileMetrics(reg prometheus.Registerer) *fileMetrics {
	m := &fileMetrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshca_audit_file_records_total",
			Help: "Records appended to the audit file, by kind (event, checkpoint, start, restart, rotated)."}, []string{"kind"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshca_audit_file_dropped_records_total",
			Help: "Audit events left out of the audit file because writing it failed for too long (the chain stays intact)."}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshca_audit_file_write_errors_total",
			Help: "Failed writes, syncs and rotations of the audit file."}),
		checkpointErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshca_audit_file_checkpoint_errors_total",
			Help: "Checkpoints that could not be signed."}),
		sequence: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshca_audit_file_sequence",
			Help: "Sequence number of the last audit record."}),
		checkpointSeq: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshca_audit_file_checkpoint_sequence",
			Help: "Sequence number of the last signed checkpoint; keep it elsewhere to detect a log cut back to an older checkpoint (meshca audit verify --expect-seq)."}),
		checkpointTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshca_audit_file_checkpoint_timestamp_seconds",
			Help: "When the last signed checkpoint was written (Unix time)."}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.dropped, m.writeErrors, m.checkpointErrors, m.sequence, m.checkpointSeq, m.checkpointTime)
	}
	return m
}
