package boltstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/store"
)

// The issuance journal. A group of issuance records is acknowledged once
// it is appended to the journal and the journal is synced: one write
// and one sync per group, where a bbolt commit costs the page writes, the
// B+tree's CPU and two fdatasyncs (data pages, then the meta page).
//
// Where the file system allows it, the journal is written with direct I/O
// (open(2) O_DIRECT) and each write carries its own sync (pwritev2(2)
// RWF_DSYNC, "a per-write equivalent of the O_DSYNC open(2) flag"): one
// system call per group, and no page cache to copy into and write back.
// Direct I/O moves whole blocks from an aligned buffer, so the journal is
// mirrored in memory and a group rewrites the blocks its frames touch;
// the bytes of earlier frames in the first of them are rewritten as they
// are. Elsewhere (a file system without O_DIRECT, or a kernel without
// RWF_DSYNC) a group is a pwrite and an fdatasync. The
// records are applied to bbolt later, many groups in one ordinary (synced)
// transaction. Until then the records are kept in memory for the readers
// (see groupCommitter).
//
// The file has a fixed size (journalSize) and two halves, regions. Frames
// go to one region at a time, all of one epoch. When it is half full and
// the other region's records are all in bbolt, the frames go on in the
// other region from its start, with the next epoch, while a transaction
// beside the commits applies the first region's records (and raises the
// store's epoch to the new region's): no commit waits for bbolt. A
// checkpoint applies every record and empties the journal: the epoch is
// raised past both regions and frames start over in the first. Each frame
// is
//
//	u32 payload length | u32 CRC-32C of epoch and payload | u64 epoch | payload
//	payload: u16 serial length | serial | the record's JSON
//
// The store's journal epoch (meta "journal_epoch") is raised by the
// transaction that applies the records of every frame of a lower epoch.
// Open replays, from the start of each region, the frames of an epoch at
// least the store's, and stops at the first that is short, fails its
// checksum or belongs to another epoch than the region's first frame: a
// write torn by a crash (never acknowledged, since the acknowledgement
// waits for the sync), or frames of an earlier use of the region, whose
// records are in bbolt. Replaying a record that is already in bbolt
// changes nothing. (A schema 3 journal was one 2 MiB region, which is
// the first region of this layout: Open extends the file and replays it
// as such.)

// journalSuffix names the journal beside the store file.
const journalSuffix = ".journal"

// frameHeader is the length of a frame's header.
const frameHeader = 16

// maxFramePayload bounds a frame; a larger length is a torn or foreign
// header, and ends the replay.
const maxFramePayload = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errJournalFailed is returned for every write after a sync of the
// journal failed.
var errJournalFailed = errors.New("store: a sync of the issuance journal failed, so what it holds on disk is unknown")

// journalSize is the journal file's size: it is written with zeros once,
// and frames overwrite them, so that an fdatasync writes the frames' pages
// and not the inode, as it must when a write grows the file. Each region
// is half of it. A group that does not fit in the region moves to the
// other or checkpoints first. A variable for the tests; a multiple of
// 2*directBlock for direct I/O.
var journalSize int64 = 4 << 20

type journal struct {
	f     *os.File
	path  string
	epoch uint64 // of the frames of the current region
	off   int64  // where the next frame goes
	buf   []byte
	// region is the current region (0 or 1). otherLive: the other
	// region holds frames of epoch otherEpoch whose records may not all
	// be in bbolt yet.
	region     int
	otherLive  bool
	otherEpoch uint64
	// sync makes the appended frames durable: fdatasync, replaced in the
	// tests that count the syncs of one OS thread.
	sync func(*os.File) error
	// noSync skips the sync (the durability tests' store without fsync).
	noSync bool

	// direct is the journal opened with O_DIRECT, nil when the file
	// system refused it; mirror is the journal's content, block-aligned
	// in memory. writeDSync writes b at off through direct with
	// RWF_DSYNC (replaced in the same tests as sync).
	direct     *os.File
	mirror     []byte
	writeDSync func(f *os.File, b []byte, off int64) error

	// clock times each append's write and sync into took (the store's
	// clock; real unless a test sets it); took is zero when an append
	// wrote nothing.
	clock clock.Clock
	took  time.Duration
}

// journalDirectIO: write the journal with direct I/O where the file
// system allows it. A variable for the tests of the other way.
var journalDirectIO = true

// directBlock is the alignment of direct I/O: of the buffer in memory,
// the offset and the length (open(2) O_DIRECT: the logical block size of
// the device, 512 or 4096 bytes; 4096 suits both).
const directBlock = 4096

// pwriteDSync writes b at off in one pwritev2(2) with RWF_DSYNC: the data
// is durable when it returns.
func pwriteDSync(f *os.File, b []byte, off int64) error {
	for {
		n, err := unix.Pwritev2(int(f.Fd()), [][]byte{b}, off, unix.RWF_DSYNC)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err == nil && n != len(b):
			err = io.ErrShortWrite
		}
		return err
	}
}

// fdatasync syncs f's data and the metadata needed to read it (its size).
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// openJournal opens (creating if needed) the journal at path and returns
// it with the records of epoch found in it, in the order they were
// appended. created reports a new file, or one shorter than journalSize:
// an Open that created it may have stopped before it synced the file's
// name, so the caller syncs it (fsync(2): a synced file's directory entry
// needs a sync of the directory).
func openJournal(path string, epoch uint64) (j *journal, recs []*pendingPut, created bool, err error) {
	_, statErr := os.Stat(path)
	created = errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, false, fmt.Errorf("open the issuance journal: %w", err)
	}
	j = &journal{f: f, path: path, epoch: epoch, sync: fdatasync, noSync: checkNoSync, writeDSync: pwriteDSync, clock: clock.RealClock{}}
	data, err := io.ReadAll(f)
	var top uint64
	if err == nil {
		recs, top, err = decodeRegions(data, epoch)
	}
	if err == nil && top > epoch {
		j.epoch = top // what Open raises the store's epoch past
	}
	if err == nil {
		created = created || int64(len(data)) < journalSize
		err = j.fill(int64(len(data)))
	}
	if err != nil {
		f.Close()
		return nil, nil, false, fmt.Errorf("issuance journal %s: %w", path, err)
	}
	if !j.noSync && journalDirectIO {
		if err := j.openDirect(data); err != nil {
			f.Close()
			return nil, nil, false, fmt.Errorf("issuance journal %s: %w", path, err)
		}
	}
	return j, recs, created, nil
}

// openDirect opens the journal a second time with O_DIRECT for the
// appends, after a first write (of its first block, unchanged) shows
// that direct I/O and RWF_DSYNC work on this file system. Otherwise the
// journal stays on pwrite and fdatasync; a first write that fails for
// another reason (EIO) is an error.
func (j *journal) openDirect(data []byte) error {
	if j.regionSize()%directBlock != 0 {
		return nil
	}
	fd, err := unix.Open(j.path, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // EINVAL: no O_DIRECT here (tmpfs before Linux 6.6, some FUSE and network file systems)
	}
	direct := os.NewFile(uintptr(fd), j.path)
	raw := make([]byte, journalSize+directBlock)
	skip := (directBlock - int(uintptr(unsafe.Pointer(&raw[0]))%directBlock)) % directBlock
	mirror := raw[skip : skip+int(journalSize)]
	copy(mirror, data)
	if err := j.writeDSync(direct, mirror[:directBlock], 0); err != nil {
		direct.Close()
		if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP) {
			return nil // no RWF_DSYNC (Linux before 4.7), or alignment the device refuses
		}
		return fmt.Errorf("write its first block: %w", err)
	}
	j.direct, j.mirror = direct, mirror
	return nil
}

// fill writes zeros from size to journalSize and syncs them.
func (j *journal) fill(size int64) error {
	if size >= journalSize {
		return nil
	}
	zeros := make([]byte, 1<<20)
	for off := size; off < journalSize; off += int64(len(zeros)) {
		if _, err := j.f.WriteAt(zeros[:min(int64(len(zeros)), journalSize-off)], off); err != nil {
			return err
		}
	}
	if j.noSync {
		return nil
	}
	return j.f.Sync() // the size too
}

// decodeRegions returns the records of the frames to replay in data, a
// journal file, with the greatest epoch among them: those at the start of
// each region of an epoch at least min. The first region's frames are
// read without a bound at the middle: they never reach it (a group that
// does not fit moves on), so this reads the same frames, and a test
// journal that does cross it is read whole.
func decodeRegions(data []byte, min uint64) ([]*pendingPut, uint64, error) {
	recs, top, err := decodeFrames(data, min)
	if err != nil {
		return nil, 0, err
	}
	if half := journalSize / 2; int64(len(data)) > half {
		second, top2, err := decodeFrames(data[half:], min)
		if err != nil {
			return nil, 0, fmt.Errorf("the second region: %w", err)
		}
		recs, top = append(recs, second...), max(top, top2)
	}
	return recs, top, nil
}

// decodeFrames returns the records of the valid frames at the start of
// data that share the first one's epoch, if it is at least min, and that
// epoch. A frame that is valid but whose record cannot be decoded is an
// error: its checksum says it is what meshca wrote.
func decodeFrames(data []byte, min uint64) ([]*pendingPut, uint64, error) {
	var recs []*pendingPut
	var epoch uint64
	for off := 0; len(data)-off >= frameHeader; {
		n := int(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		e := binary.BigEndian.Uint64(data[off+8:])
		if off == 0 {
			epoch = e
		}
		if n < 2 || n > maxFramePayload || len(data)-off-frameHeader < n || e != epoch || e < min {
			break
		}
		body := data[off+8 : off+frameHeader+n] // epoch and payload
		if crc32.Checksum(body, castagnoli) != sum {
			break
		}
		p, err := decodeFramePayload(body[8:])
		if err != nil {
			return nil, 0, fmt.Errorf("frame at offset %d: %w", off, err)
		}
		recs = append(recs, p)
		off += frameHeader + n
	}
	if len(recs) == 0 {
		return nil, 0, nil
	}
	return recs, epoch, nil
}

func decodeFramePayload(b []byte) (*pendingPut, error) {
	if len(b) < 2 || len(b)-2 < int(binary.BigEndian.Uint16(b)) {
		return nil, errors.New("short payload")
	}
	kl := int(binary.BigEndian.Uint16(b))
	key, value := b[2:2+kl:2+kl], b[2+kl:]
	var rec store.Issuance
	if err := json.Unmarshal(value, &rec); err != nil {
		return nil, err
	}
	if k, err := serialKey(rec.Serial); err != nil || !bytes.Equal(k, key) {
		return nil, fmt.Errorf("the frame's key %x is not its record's serial %q", key, rec.Serial)
	}
	ek, ev, gk := indexEntries(key, rec.NotAfter.Unix(), rec.Generation, rec.Identity)
	return &pendingPut{key: key, value: value, expiryKey: ek, expiryValue: ev, generationKey: gk}, nil
}

// errJournalFull: the group does not fit after the frames in the journal;
// a checkpoint empties it.
var errJournalFull = errors.New("the issuance journal is full")

// errFrameTooLarge: a record's frame does not fit in the empty journal;
// nothing was written.
var errFrameTooLarge = errors.New("a record does not fit in the issuance journal")

// frameLen is the length of p's frame in the journal (0: not written).
func frameLen(p *pendingPut) int64 {
	if p.skip {
		return 0
	}
	return int64(frameHeader + 2 + len(p.key) + len(p.value))
}

// fitting returns how many of group's first records have frames that fit
// together in an empty region: at least one.
func (j *journal) fitting(group []*pendingPut) int {
	var size int64
	for i, p := range group {
		if size += frameLen(p); size > j.regionSize() && i > 0 {
			return i
		}
	}
	return len(group)
}

// appendFrame appends p's frame of epoch to b.
func appendFrame(b []byte, epoch uint64, p *pendingPut) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, uint32(2+len(p.key)+len(p.value)))
	b = binary.BigEndian.AppendUint32(b, 0) // the checksum, below
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.key)))
	b = append(b, p.key...)
	b = append(b, p.value...)
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+8:], castagnoli))
	return b
}

// append writes group's frames in one write and syncs them. j.took is
// then the time of that write and its sync, and nothing else (not the
// frames' encoding, not a wait for room in the journal).
func (j *journal) append(group []*pendingPut) error {
	j.took = 0
	b := j.buf[:0]
	for _, p := range group {
		if p.skip { // refused, or recorded already: durable as it is
			continue
		}
		b = appendFrame(b, j.epoch, p)
	}
	j.buf = b
	if len(b) == 0 {
		return nil
	}
	if j.off+int64(len(b)) > j.regionEnd() {
		if j.off == j.regionStart() {
			return fmt.Errorf("%w: a group of %d bytes, a region of the journal %d bytes", errFrameTooLarge, len(b), j.regionSize())
		}
		return errJournalFull
	}
	if j.direct != nil && !j.noSync {
		return j.appendDirect(b)
	}
	start := j.clock.Now()
	if _, err := j.f.WriteAt(b, j.off); err != nil {
		// Nothing is synced: the next group overwrites what this write
		// left at off (a whole frame of it that a crash keeps would be
		// replayed: a record of a certificate never handed out, which is
		// harmless). A full disk fails only this group.
		return err
	}
	j.off += int64(len(b))
	if j.noSync {
		return nil
	}
	if err := j.sync(j.f); err != nil {
		return &syncError{err}
	}
	j.took = j.clock.Since(start)
	return nil
}

// appendDirect writes b, the frames of a group, at off: the blocks they
// touch, from the mirror, in one write that returns once they are durable.
func (j *journal) appendDirect(b []byte) error {
	end := j.off + int64(len(b))
	copy(j.mirror[j.off:end], b)
	start, blocksEnd := j.off&^(directBlock-1), min((end+directBlock-1)&^(directBlock-1), j.regionEnd())
	t := j.clock.Now()
	err := j.writeDSync(j.direct, j.mirror[start:blocksEnd], start)
	switch {
	case err == nil:
		j.took = j.clock.Since(t)
		j.off = end
		return nil
	case errors.Is(err, syscall.EFBIG), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT),
		errors.Is(err, syscall.EINVAL), errors.Is(err, io.ErrShortWrite):
		// A file size limit, a full thin-provisioned device, a length
		// the limit cut to an unaligned one. Part of the blocks may be
		// written, but only with what they held (the earlier frames,
		// acknowledged, are rewritten byte for byte) or with this
		// group's frames, which are never acknowledged: a crash may
		// replay one as a record of a certificate never handed out,
		// which is harmless. This group fails; the next one writes
		// where it would have.
		clear(j.mirror[j.off:end])
		return &os.PathError{Op: "write", Path: j.path, Err: err}
	default:
		// EIO and the like: what the blocks hold now, earlier frames
		// included, is unknown.
		return &syncError{&os.PathError{Op: "write", Path: j.path, Err: err}}
	}
}

// syncError is a failed sync of the journal: after it, what the journal
// holds on disk is unknown (fsync(2): the dirty pages may be dropped after
// a failed writeback).
type syncError struct{ err error }

func (e *syncError) Error() string { return e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

// reset starts the journal over in its first region for the frames of
// epoch, after a checkpoint made every frame in it durable in bbolt: new
// frames overwrite the old ones, which are of an older epoch and end a
// replay.
func (j *journal) reset(epoch uint64) {
	j.epoch, j.off, j.region, j.otherLive = epoch, 0, 0, false
}

// The regions: the current one is [regionStart, regionEnd).
func (j *journal) regionSize() int64  { return journalSize / 2 }
func (j *journal) regionStart() int64 { return int64(j.region) * j.regionSize() }
func (j *journal) regionEnd() int64   { return j.regionStart() + j.regionSize() }

// filled is how much of the current region the frames take.
func (j *journal) filled() int64 { return j.off - j.regionStart() }

// otherFree reports whether the frames can move to the other region: its
// records are all in bbolt, whose journal epoch is durable.
func (j *journal) otherFree(durable uint64) bool {
	return !j.otherLive || j.otherEpoch < durable
}

// switchRegion moves the frames to the other region, from its start, with
// the next epoch; the caller checked otherFree. The current region's
// frames stay until a transaction applies their records and raises the
// store's epoch to the new one.
func (j *journal) switchRegion() {
	j.otherLive, j.otherEpoch = true, j.epoch
	j.region ^= 1
	j.epoch++
	j.off = j.regionStart()
}

// used reports whether anything was ever written to the journal, anywhere:
// a crash may keep a later page of a write and lose its first.
func (j *journal) used() (bool, error) {
	buf := make([]byte, 64<<10)
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := j.f.ReadAt(buf, off)
		if slices.ContainsFunc(buf[:n], func(b byte) bool { return b != 0 }) {
			return true, nil
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

func (j *journal) close() error {
	var err error
	if j.direct != nil {
		err = j.direct.Close()
	}
	return errors.Join(err, j.f.Close())
}
