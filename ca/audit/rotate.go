package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Rotated files are named by meshca only: the current file's name, a dot
// and the seq of their first record in 20 digits, so that a shell glob
// lists them in chain order (audit.log.00000000000000000001, ...).
func (f *File) rotatedName(firstSeq uint64) string {
	return fmt.Sprintf("%s.%020d", f.base, firstSeq)
}

// rotatedFiles lists the rotated files of the directory, oldest first.
func (f *File) rotatedFiles() ([]string, error) {
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		suffix, ok := strings.CutPrefix(n, f.base+".")
		if !ok || len(suffix) != 20 || !e.Type().IsRegular() {
			continue
		}
		if _, err := strconv.ParseUint(suffix, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// takeLock takes an exclusive lock on .<name>.lock next to the file, so
// that a second meshca (another replica on a shared volume) never writes
// the same chain; the lock goes with the process.
func (f *File) takeLock() error {
	p := filepath.Join(f.dir, "."+f.base+".lock")
	l, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := syscall.Flock(int(l.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		l.Close()
		return fmt.Errorf("audit: %s is written by another process (lock %s: %v); give each meshca its own audit.file", f.o.Path, p, err)
	}
	f.lock = l
	return nil
}

// moveAside renames the current file to its rotated name, refusing to
// replace an existing file.
func (f *File) moveAside(firstSeq uint64) (string, error) {
	name := f.rotatedName(firstSeq)
	if err := os.Link(f.o.Path, filepath.Join(f.dir, name)); err != nil {
		return "", err
	}
	if err := os.Remove(f.o.Path); err != nil {
		return "", err
	}
	return name, nil
}

func (f *File) create() error {
	w, err := os.OpenFile(f.o.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := w.Chmod(0o600); err != nil {
		w.Close()
		return fmt.Errorf("audit: %w", err)
	}
	f.f = w
	return nil
}

// rotateLocked seals the current file with a final checkpoint, moves it
// aside and starts a new one whose first record links to it.
func (f *File) rotateLocked() error {
	f.checkpointLocked(CheckpointRotate)
	if err := f.syncLocked(); err != nil {
		return err
	}
	name, err := f.moveAside(f.firstSeq)
	if err != nil {
		return err // keep appending to the current file
	}
	if err := f.f.Close(); err != nil {
		f.writeFailed("closing the rotated file", err)
	}
	if err := f.create(); err != nil {
		return err
	}
	f.size, f.firstSeq, f.retryRotateAt = 0, f.seq+1, 0
	f.line = appendHead(f.line[:0], f.seq+1, &f.prev, KindRotated)
	f.line = appendTime(f.line, f.o.Clock.Now())
	f.line = appendString(f.line, "previous_file", name)
	f.line = append(f.line, '}')
	f.appendLocked(f.line, KindRotated)
	syncDir(f.dir)
	f.prune()
	return nil
}

// prune removes the oldest rotated files beyond MaxFiles.
func (f *File) prune() {
	names, err := f.rotatedFiles()
	if err != nil {
		return
	}
	for len(names) > f.o.MaxFiles {
		if err := os.Remove(filepath.Join(f.dir, names[0])); err != nil {
			f.o.Log.Warn("audit file: removing an old rotated file failed", "file", names[0], "error", err)
		}
		names = names[1:]
	}
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// tail is what resume needs of an existing file.
type tail struct {
	first, last []byte // first and last complete lines; nil if none
	torn        []byte // bytes after the last "\n"
}

// readTail reads the first and the last complete line of a file and any
// torn bytes after the last one, without reading the whole file.
func readTail(path string) (tail, error) {
	var t tail
	r, err := os.Open(path)
	if err != nil {
		return t, err
	}
	defer r.Close()
	st, err := r.Stat()
	if err != nil {
		return t, err
	}
	size := st.Size()
	head := make([]byte, min(size, maxLine+1))
	if _, err := io.ReadFull(r, head); err != nil {
		return t, err
	}
	if i := indexByte(head, '\n'); i >= 0 {
		t.first = head[:i]
	} else if int64(len(head)) < size {
		return t, fmt.Errorf("%s: the first line is longer than %d bytes: not a meshca audit file", path, maxLine)
	}
	off := max(0, size-2*maxLine-2)
	buf := make([]byte, size-off)
	if _, err := r.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return t, err
	}
	end := lastIndexByte(buf, '\n')
	t.torn = buf[end+1:]
	if end < 0 {
		return t, nil
	}
	start := lastIndexByte(buf[:end], '\n') + 1
	if start == 0 && off > 0 {
		return t, fmt.Errorf("%s: the last line is longer than %d bytes: not a meshca audit file", path, maxLine)
	}
	t.last = buf[start:end]
	return t, nil
}

func indexByte(b []byte, c byte) int {
	for i, v := range b {
		if v == c {
			return i
		}
	}
	return -1
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// resume continues the chain of the current file or, when it has no
// complete record (absent, empty, or only a torn first line after a
// rotation), of the newest rotated file; without either it starts a new
// chain.
func (f *File) resume() error {
	now := f.o.Clock.Now()
	var cur, from tail
	var fromName string
	st, err := os.Stat(f.o.Path)
	switch {
	case err == nil && st.Size() > 0:
		if cur, err = readTail(f.o.Path); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		from, fromName = cur, f.base
	case err == nil || errors.Is(err, os.ErrNotExist):
	default:
		return fmt.Errorf("audit: %w", err)
	}
	if from.last == nil {
		names, err := f.rotatedFiles()
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if len(names) > 0 {
			fromName = names[len(names)-1]
			if from, err = readTail(filepath.Join(f.dir, fromName)); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
		}
	}
	var last *record
	if from.last != nil {
		if last, err = parseRecord(from.last); err != nil {
			return fmt.Errorf("audit: the last complete record of %s does not parse (%v); check it with 'meshca audit verify' and move the file aside to start a new chain", filepath.Join(f.dir, fromName), err)
		}
		f.seq, f.prev = *last.Seq, sha256.Sum256(from.last)
	}
	// The torn tail to acknowledge: the current file's, or else (the
	// current file absent or empty) the rotated file's we continue.
	torn := cur.torn
	if len(cur.torn) == 0 && len(cur.first) == 0 {
		torn = from.torn
	}
	previous := ""
	if fromName != "" && fromName != f.base {
		previous = fromName
	}
	if len(cur.torn) > 0 {
		// Never extend a torn line: the file stays as the crash left it.
		firstSeq := f.seq + 1
		if cur.first != nil {
			if r, err := parseRecord(cur.first); err == nil {
				firstSeq = *r.Seq
			}
		} else if _, err := os.Lstat(filepath.Join(f.dir, f.rotatedName(f.seq))); errors.Is(err, os.ErrNotExist) {
			// A file holding no complete record is named after the
			// last complete one (in the file before it): the new file
			// begins with seq f.seq+1, and its own rotation takes that
			// name.
			firstSeq = f.seq
		}
		if previous, err = f.moveAside(firstSeq); err != nil {
			return fmt.Errorf("audit: moving aside %s with a torn last line: %w", f.o.Path, err)
		}
		f.o.Log.Warn("audit file: the last line was torn (a crash mid-write); the file was moved aside as it is and the chain continues from the last complete record",
			"file", previous, "torn_bytes", len(cur.torn), "last_seq", f.seq)
	}
	if err := f.create(); err != nil {
		return err
	}
	if fi, err := f.f.Stat(); err == nil {
		f.size = fi.Size()
	}
	f.firstSeq = f.seq + 1
	if f.size > 0 && cur.first != nil {
		if r, err := parseRecord(cur.first); err == nil {
			f.firstSeq = *r.Seq
		}
	}
	if last == nil && len(torn) == 0 {
		f.line = appendHead(f.line[:0], 1, &zeroHash, KindStart)
		f.line = appendTime(f.line, now)
		f.line = append(f.line, '}')
		f.appendLocked(f.line, KindStart)
		return f.syncLocked()
	}
	clean := last != nil && last.Kind == KindCheckpoint && last.Reason == CheckpointShutdown
	f.line = appendHead(f.line[:0], f.seq+1, &f.prev, KindRestart)
	f.line = appendTime(f.line, now)
	if previous != "" {
		f.line = appendString(f.line, "previous_file", previous)
	}
	f.line = append(f.line, `,"previous_clean":`...)
	f.line = strconv.AppendBool(f.line, clean)
	if len(torn) > 0 {
		h := sha256.Sum256(torn)
		f.line = append(f.line, `,"torn_bytes":`...)
		f.line = strconv.AppendInt(f.line, int64(len(torn)), 10)
		f.line = appendString(f.line, "torn_sha256", hex.EncodeToString(h[:]))
	}
	f.line = append(f.line, '}')
	f.appendLocked(f.line, KindRestart)
	if !clean {
		f.o.Log.Warn("audit file: the previous run did not end with its shutdown checkpoint (a crash, a kill, or the file was cut); a restart record says so",
			"file", f.o.Path, "last_seq", f.seq-1)
	}
	return f.syncLocked()
}
