// Package syncorder makes durability observable. It runs a process under
// strace(1), parses the trace and checks, per acknowledged record, that the
// record reached the disk before the acknowledgement left the process,
// either through the store's issuance journal:
//
//	write of the record's frame to the journal ─► fsync/fdatasync of the
//	  journal ─► the reply (socket or stdout write)
//
// where a pwritev2 of the frame with RWF_DSYNC is both the write and the
// sync, or through a bbolt transaction:
//
//	write of the record's page ─► fsync/fdatasync of the store
//	  ─► write of the meta page that commits the transaction
//	  ─► fsync/fdatasync of the store ─► the reply
//
// The second is bbolt's commit protocol (data pages, sync, meta page,
// sync); a transaction whose meta page is not synced is rolled back by the
// next open after a power loss. Killing or closing the process proves nothing about
// this, because the kernel page cache survives both; only the order of the
// system calls does.
//
// strace reports events in an order consistent with causality: a call's
// exit is printed before the traced thread resumes, so anything the thread
// does afterwards is printed later. Line order is therefore used to compare
// calls, and timestamps (CLOCK_REALTIME, -ttt) only to relate the trace to
// the test's own clock.
package syncorder

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Traced are the system calls recorded: every way Go or bbolt write a file
// or a socket, and every way they sync one.
const Traced = "fsync,fdatasync,sync_file_range,pwrite64,pwritev,pwritev2,write,writev,sendmsg,sendto,ftruncate,fallocate"

// Command returns name args… wrapped in strace writing the trace to
// traceFile. It fails when strace is not installed: the durability tests
// must not pass vacuously (make deps installs Debian's strace).
func Command(traceFile, name string, args ...string) (*exec.Cmd, error) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		return nil, fmt.Errorf("strace is required to observe fsync ordering and is not installed: run `make deps` (apt-get install strace): %w", err)
	}
	sargs := []string{
		"-f",          // every thread: Go moves goroutines between threads
		"-ttt",        // CLOCK_REALTIME timestamps, comparable with time.Now
		"-yy",         // file paths and TCP endpoints for descriptors
		"-s", "65536", // whole pages, so a record's bytes are visible
		"-o", traceFile,
		"-e", "trace=" + Traced,
		"--", name,
	}
	return exec.Command(strace, append(sargs, args...)...), nil
}

// Call is one system call from the trace.
type Call struct {
	Pid  int
	Time float64 // seconds since the epoch, at entry
	Name string
	FD   int
	// Path is what strace -yy printed for FD: a file path, "pipe:[…]",
	// "TCP:[local->remote]".
	Path string
	// Args is the raw argument text after the descriptor (strings escaped
	// as strace prints them: `"` is `\"`).
	Args string
	// Ret is the return value (-1 on error).
	Ret int64
	// Entry and Exit are the line numbers at which the call began and
	// ended; they are equal for calls that were not interrupted.
	Entry, Exit int
}

// Trace is a parsed strace -f -ttt -yy output.
type Trace struct {
	Calls []Call
}

var (
	lineRE = regexp.MustCompile(`^(\d+)\s+(\d+\.\d+)\s+(.*)$`)
	// name(fd<path>, rest: the path may contain '>' only inside TCP:[…].
	callRE    = regexp.MustCompile(`^(\w+)\((\d+)<((?:TCP|TCPv6|UDP|UDPv6|UNIX):\[[^\]]*\]|[^>]*)>(.*)$`)
	resumedRE = regexp.MustCompile(`^<\.\.\. (\w+) resumed>(.*)$`)
	// retRE is the result at the end of the line: "= N", or "= -1 ERRNO
	// (text)" and what strace adds to an injected fault. The greedy
	// prefix makes it the last match, so that a record's bytes that
	// look like a result cannot stand in for it.
	retRE = regexp.MustCompile(`^.*\)\s+=\s+(-?\d+)(?: E[A-Z0-9]+ \([^()]*\))?(?: \((?:INJECTED|DELAYED)\))*$`)
)

const unfinished = " <unfinished ...>"

// ParseFile parses the trace in path.
func ParseFile(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads an strace -f -ttt -yy trace. Calls on descriptors without a
// -yy annotation, signals and exit lines are skipped.
func Parse(r io.Reader) (*Trace, error) {
	tr := &Trace{}
	pending := map[int]*Call{} // by pid: the call whose exit has not been seen
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		m := lineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		ts, _ := strconv.ParseFloat(m[2], 64)
		body := m[3]
		if rm := resumedRE.FindStringSubmatch(body); rm != nil {
			c := pending[pid]
			if c == nil || c.Name != rm[1] {
				continue // the entry was on a call we do not track
			}
			delete(pending, pid)
			c.Args += rm[2]
			c.Exit = line
			if err := setRet(c); err != nil {
				return nil, fmt.Errorf("trace line %d: %w", line, err)
			}
			tr.Calls = append(tr.Calls, *c)
			continue
		}
		cm := callRE.FindStringSubmatch(body)
		if cm == nil {
			continue
		}
		fd, _ := strconv.Atoi(cm[2])
		c := &Call{Pid: pid, Time: ts, Name: cm[1], FD: fd, Path: cm[3], Args: cm[4], Entry: line, Exit: line}
		if rest, ok := strings.CutSuffix(c.Args, unfinished); ok {
			c.Args = rest
			pending[pid] = c
			continue
		}
		if err := setRet(c); err != nil {
			return nil, fmt.Errorf("trace line %d: %w", line, err)
		}
		tr.Calls = append(tr.Calls, *c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	// Keep the calls in entry order (resumed calls were appended at exit).
	sortByEntry(tr.Calls)
	return tr, nil
}

func setRet(c *Call) error {
	m := retRE.FindStringSubmatch(c.Args)
	if m == nil {
		if strings.HasSuffix(c.Args, "= ?") || strings.Contains(c.Args, "<unavailable>") {
			c.Ret = -1 // the process died inside the call
			return nil
		}
		return fmt.Errorf("%s: no return value in %q", c.Name, truncate(c.Args))
	}
	c.Ret, _ = strconv.ParseInt(m[1], 10, 64)
	return nil
}

func sortByEntry(cs []Call) {
	// Insertion sort: the slice is almost sorted (only resumed calls move).
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].Entry < cs[j-1].Entry; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

func truncate(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// IsWrite reports whether c writes bytes to its descriptor.
func (c Call) IsWrite() bool {
	switch c.Name {
	case "write", "writev", "pwrite64", "pwritev", "pwritev2", "sendmsg", "sendto":
		return true
	}
	return false
}

// IsSync reports whether c is a successful fsync or fdatasync.
func (c Call) IsSync() bool {
	return (c.Name == "fsync" || c.Name == "fdatasync") && c.Ret == 0
}

// IsDSyncWrite reports whether c is a pwritev2(2) of one buffer with
// RWF_DSYNC that wrote all of it: a write that returns once its data is
// durable, as if an fdatasync of the range followed it.
func (c Call) IsDSyncWrite() bool {
	if c.Name != "pwritev2" || c.Ret <= 0 {
		return false
	}
	m := dsyncWriteRE.FindStringSubmatch(c.Args)
	if m == nil {
		return false
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n == c.Ret && slices.ContainsFunc(strings.Split(m[2], "|"), func(f string) bool { return f == "RWF_DSYNC" || f == "RWF_SYNC" })
}

// dsyncWriteRE is the end of a successful pwritev2 line of one buffer:
// its length, the offset, the flags and the result. Anchored at the end
// of the line with a greedy prefix, it cannot match inside the data.
var dsyncWriteRE = regexp.MustCompile(`^.*iov_len=(\d+)\}\], 1, \d+, ([A-Z0-9_|]+)\)\s+=\s+\d+$`)

// Contains reports whether the data c wrote, as strace printed it,
// contains s (quotes in s must be escaped as strace does: `\"`).
func (c Call) Contains(s string) bool { return strings.Contains(c.Args, s) }

var pwriteTailRE = regexp.MustCompile(`, (\d+), (\d+)\)\s+=`)

// isMetaPageWrite reports whether c writes one of bbolt's two meta pages:
// page 0 or page 1, one page long, which is the commit point of a
// transaction.
func (c Call) isMetaPageWrite() bool {
	if c.Name != "pwrite64" || c.Ret <= 0 {
		return false
	}
	m := pwriteTailRE.FindStringSubmatch(c.Args)
	if m == nil {
		return false
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	off, _ := strconv.ParseInt(m[2], 10, 64)
	return off == 0 || off == n
}

// Commit is the evidence that one record became durable.
type Commit struct {
	Record Call // the write carrying the record's bytes
	// Journal: the record was written to the store's issuance journal
	// (JournalPath), whose sync after it made it durable; bbolt's protocol
	// (DataSync, Meta, MetaSync) does not apply then.
	Journal  bool
	DataSync Call // the sync after it
	Meta     Call // the meta page write committing the transaction
	MetaSync Call // the sync after it
	// Durable is the sync that made the record durable: the journal's
	// sync, or MetaSync.
	Durable Call
	Reply   Call // the acknowledgement
}

// JournalPath is the issuance journal of the bbolt store at storePath.
func JournalPath(storePath string) string { return storePath + ".journal" }

// RecordMarker is how a JSON record with "serial": serial appears in a
// write of the store, as strace prints it.
func RecordMarker(serial string) string { return `\"serial\":\"` + serial + `\"` }

// DurableBeforeReply checks that the record whose write contains marker
// became durable before the first call that reply accepts acknowledged
// it, by one of the store's two protocols. The record's first write
// tells which:
//
//   - to the issuance journal (JournalPath): that write, then a sync of the
//     journal (or the write itself, with RWF_DSYNC), then the
//     acknowledgement;
//   - to storePath (bbolt): that write, a sync, a meta page write, a sync
//     again, and only then the acknowledgement.
//
// The error describes the first missing step.
func (tr *Trace) DurableBeforeReply(storePath, marker string, reply func(Call) bool) (Commit, error) {
	var cm Commit
	journal := JournalPath(storePath)
	rec, ok := tr.first(0, func(c Call) bool {
		return c.IsWrite() && (c.Path == storePath || c.Path == journal) && c.Ret > 0 && c.Contains(marker)
	})
	if !ok {
		return cm, fmt.Errorf("no write of %s or %s carries the record %s", storePath, journal, marker)
	}
	cm.Record, cm.Journal = rec, rec.Path == journal
	rep, ok := tr.first(0, reply)
	if !ok {
		return cm, fmt.Errorf("record %s: no acknowledgement in the trace", marker)
	}
	cm.Reply = rep
	if rep.Entry < rec.Exit {
		return cm, fmt.Errorf("record %s: acknowledged (line %d, %s) before its record was written to %s (line %d)", marker, rep.Entry, rep.Name, rec.Path, rec.Exit)
	}
	if cm.Journal {
		if rec.IsDSyncWrite() {
			cm.Durable = rec
			return cm, nil
		}
		js, ok := tr.first(rec.Exit, func(c Call) bool { return c.IsSync() && c.Path == journal })
		if !ok || js.Exit > rep.Entry {
			return cm, fmt.Errorf("record %s: written to %s at line %d but not fsynced before the acknowledgement at line %d (%s on %s)", marker, journal, rec.Exit, rep.Entry, rep.Name, rep.Path)
		}
		cm.Durable = js
		return cm, nil
	}
	isStoreSync := func(c Call) bool { return c.IsSync() && c.Path == storePath }
	ds, ok := tr.first(rec.Exit, isStoreSync)
	if !ok || ds.Exit > rep.Entry {
		return cm, fmt.Errorf("record %s: written to %s at line %d but not fsynced before the acknowledgement at line %d (%s on %s)", marker, storePath, rec.Exit, rep.Entry, rep.Name, rep.Path)
	}
	cm.DataSync = ds
	meta, ok := tr.first(rec.Exit, func(c Call) bool { return c.Path == storePath && c.isMetaPageWrite() })
	if !ok || meta.Entry > rep.Entry {
		return cm, fmt.Errorf("record %s: its transaction's meta page is not written before the acknowledgement at line %d", marker, rep.Entry)
	}
	cm.Meta = meta
	if ds.Exit > meta.Entry {
		return cm, fmt.Errorf("record %s: written at line %d but not fsynced before the meta page that commits it (line %d)", marker, rec.Exit, meta.Entry)
	}
	ms, ok := tr.first(meta.Exit, isStoreSync)
	if !ok || ms.Exit > rep.Entry {
		return cm, fmt.Errorf("record %s: the meta page committing it (line %d) is not fsynced before the acknowledgement at line %d (%s on %s)", marker, meta.Exit, rep.Entry, rep.Name, rep.Path)
	}
	cm.MetaSync, cm.Durable = ms, ms
	return cm, nil
}

// first returns the first call that began after line and satisfies ok.
func (tr *Trace) first(after int, ok func(Call) bool) (Call, bool) {
	for _, c := range tr.Calls {
		if c.Entry > after && ok(c) {
			return c, true
		}
	}
	return Call{}, false
}

// First returns the first call that began after line and satisfies ok.
func (tr *Trace) First(after int, ok func(Call) bool) (Call, bool) { return tr.first(after, ok) }

// Count returns how many calls satisfy ok.
func (tr *Trace) Count(ok func(Call) bool) int {
	n := 0
	for _, c := range tr.Calls {
		if ok(c) {
			n++
		}
	}
	return n
}
