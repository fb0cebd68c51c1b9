package syncorder

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The lines below have the shape of real `strace -f -ttt -yy -s 65536`
// output of meshca (shortened page contents).
const (
	db       = "/tmp/ca/meshca.db"
	sock     = "TCP:[127.0.0.1:15012->127.0.0.1:40000]"
	recWrite = `100 1796464325.151163 pwrite64(5</tmp/ca/meshca.db>, "\4\0\0\0\2\0k{\"serial\":\"0abc\",\"identity\":\"spiffe://x\"}\0\0", 4096, 16384) = 4096`
	frWrite  = `100 1796464325.151467 pwrite64(5</tmp/ca/meshca.db>, "\5\0\0\0\20\0\2\0", 4096, 8192) = 4096`
	dataSync = `100 1796464325.151609 fdatasync(5</tmp/ca/meshca.db>) = 0`
	meta     = `100 1796464325.152497 pwrite64(5</tmp/ca/meshca.db>, "\0\0\0\0\4\0\355\332\f\355", 4096, 4096) = 4096`
	metaSync = `100 1796464325.152891 fdatasync(5</tmp/ca/meshca.db>) = 0`
	reply    = `101 1796464325.153418 write(9<TCP:[127.0.0.1:15012->127.0.0.1:40000]>, "\27\3\3\4\332\0\1", 1247) = 1247`
	sigurg   = `101 1796464325.150000 --- SIGURG {si_signo=SIGURG, si_code=SI_TKILL, si_pid=100, si_uid=0} ---`
	exited   = `100 1796464325.156316 +++ exited with 0 +++`
)

var marker = RecordMarker("0abc")

func isReply(c Call) bool { return c.IsWrite() && c.Path == sock && c.Ret >= 256 }

func check(t *testing.T, lines ...string) (Commit, error) {
	t.Helper()
	tr, err := Parse(strings.NewReader(strings.Join(lines, "\n") + "\n"))
	require.NoError(t, err)
	return tr.DurableBeforeReply(db, marker, isReply)
}

func TestDurableBeforeReply_BboltCommitThenReplyPasses(t *testing.T) {
	c, err := check(t, sigurg, recWrite, frWrite, dataSync, meta, metaSync, reply, exited)
	require.NoError(t, err)
	require.Equal(t, 2, c.Record.Entry)
	require.Equal(t, 4, c.DataSync.Entry)
	require.Equal(t, 5, c.Meta.Entry)
	require.Equal(t, 6, c.MetaSync.Entry)
	require.Equal(t, 7, c.Reply.Entry)
	require.Equal(t, Call{Pid: 101, Time: 1796464325.153418, Name: "write", FD: 9, Path: sock,
		Args: `, "\27\3\3\4\332\0\1", 1247) = 1247`, Ret: 1247, Entry: 7, Exit: 7}, c.Reply)
}

func TestDurableBeforeReply_ReportsEachMissingStep(t *testing.T) {
	for name, tc := range map[string]struct {
		lines []string
		want  string
	}{
		"no fsync at all": {
			[]string{recWrite, frWrite, meta, reply},
			"record " + marker + ": written to " + db + " at line 1 but not fsynced before the acknowledgement at line 4 (write on " + sock + ")",
		},
		"fsync only after the reply": {
			[]string{recWrite, frWrite, dataSync, meta, reply, metaSync},
			"record " + marker + ": the meta page committing it (line 4) is not fsynced before the acknowledgement at line 5 (write on " + sock + ")",
		},
		"meta page written after the reply": {
			[]string{recWrite, dataSync, reply, meta, metaSync},
			"record " + marker + ": its transaction's meta page is not written before the acknowledgement at line 3",
		},
		"meta page without the data sync": {
			[]string{recWrite, meta, metaSync, reply},
			"record " + marker + ": written at line 1 but not fsynced before the meta page that commits it (line 2)",
		},
		"reply before the record": {
			[]string{reply, recWrite, dataSync, meta, metaSync},
			"record " + marker + ": acknowledged (line 1, write) before its record was written to " + db + " (line 2)",
		},
		"record never written": {
			[]string{frWrite, dataSync, meta, metaSync, reply},
			"no write of " + db + " or " + db + ".journal carries the record " + marker,
		},
		"no reply": {
			[]string{recWrite, dataSync, meta, metaSync},
			"record " + marker + ": no acknowledgement in the trace",
		},
		"a failed fdatasync is no sync": {
			[]string{recWrite, strings.Replace(dataSync, "= 0", "= -1 EIO (Input/output error)", 1), meta, metaSync, reply},
			"record " + marker + ": written at line 1 but not fsynced before the meta page that commits it (line 3)",
		},
		"an fsync of another file is no sync": {
			[]string{recWrite, `100 1796464325.151609 fsync(7</tmp/ca/audit.log>) = 0`, meta,
				`100 1796464325.151609 fsync(7</tmp/ca/audit.log>) = 0`, reply},
			"record " + marker + ": written to " + db + " at line 1 but not fsynced before the acknowledgement at line 5 (write on " + sock + ")",
		},
		"a small socket write is not the reply": {
			[]string{recWrite, `101 1796464325.151500 write(9<` + sock + `>, "\27\3\3\0\32", 39) = 39`, dataSync, meta, metaSync},
			"record " + marker + ": no acknowledgement in the trace",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := check(t, tc.lines...)
			require.EqualError(t, err, tc.want)
		})
	}
}

// A sync that another thread is still inside when the reply is written
// has not completed: its exit line counts, not its entry line.
func TestDurableBeforeReply_InterruptedSyncCountsAtItsExit(t *testing.T) {
	lines := []string{
		recWrite, dataSync, meta,
		`100 1796464325.152891 fdatasync(5</tmp/ca/meshca.db> <unfinished ...>`,
		reply,
		`100 1796464325.153900 <... fdatasync resumed>) = 0`,
	}
	_, err := check(t, lines...)
	require.EqualError(t, err, "record "+marker+": the meta page committing it (line 3) is not fsynced before the acknowledgement at line 5 (write on "+sock+")")

	// Resumed before the reply: durable.
	lines[4], lines[5] = lines[5], lines[4]
	c, err := check(t, lines...)
	require.NoError(t, err)
	require.Equal(t, 4, c.MetaSync.Entry)
	require.Equal(t, 5, c.MetaSync.Exit)
}

func TestParse_InterruptedPwriteKeepsItsOffsetAndResult(t *testing.T) {
	tr, err := Parse(strings.NewReader(
		`100 1.5 pwrite64(5</tmp/ca/meshca.db>, "\0\0", 4096, 0 <unfinished ...>` + "\n" +
			`101 1.6 write(2<pipe:[7]>, "{}\n", 3) = 3` + "\n" +
			`100 1.7 <... pwrite64 resumed>) = 4096` + "\n"))
	require.NoError(t, err)
	require.Len(t, tr.Calls, 2)
	w := tr.Calls[0]
	require.Equal(t, "pwrite64", w.Name)
	require.Equal(t, 1, w.Entry)
	require.Equal(t, 3, w.Exit)
	require.Equal(t, int64(4096), w.Ret)
	require.True(t, w.isMetaPageWrite())
	require.Equal(t, "pipe:[7]", tr.Calls[1].Path)
	require.Equal(t, 2, tr.Calls[1].FD)
}

func TestCommand_NeedsStrace(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Command("/dev/null", "true")
	require.ErrorContains(t, err, "strace is required to observe fsync ordering and is not installed: run `make deps`")
}

// The journal's protocol: the frame's write, a sync of the journal, then
// the reply.
const (
	jrnWrite = `100 1796464325.151163 pwrite64(6</tmp/ca/meshca.db.journal>, "\0\0\1\32\237\4\0\0\0\0\0\0\0\1\0\20\n\274{\"serial\":\"0abc\",\"identity\":\"spiffe://x\"}", 298, 596) = 298`
	jrnSync  = `100 1796464325.151609 fdatasync(6</tmp/ca/meshca.db.journal>) = 0`
)

func TestDurableBeforeReply_JournalWriteSyncThenReplyPasses(t *testing.T) {
	// The checkpoint that writes the record to bbolt later changes nothing.
	c, err := check(t, sigurg, jrnWrite, jrnSync, reply, recWrite, dataSync, meta, metaSync, exited)
	require.NoError(t, err)
	require.True(t, c.Journal)
	require.Equal(t, 2, c.Record.Entry)
	require.Equal(t, 3, c.Durable.Entry)
	require.Equal(t, 4, c.Reply.Entry)
}

// A write with RWF_DSYNC (pwritev2(2)) returns once its data is durable:
// it is the write and the sync. Lines as strace -yy prints them.
const (
	jrnDSyncWrite = `100 1796464325.151163 pwritev2(6</tmp/ca/meshca.db.journal>, [{iov_base="\0\0\1\32\237\4\0\0\0\0\0\0\0\1\0\20\n\274{\"serial\":\"0abc\",\"identity\":\"spiffe://x\"}", iov_len=4096}], 1, 0, RWF_DSYNC) = 4096`
	// The data holds what looks like the flags and a result, as a free-text field of a record could.
	jrnFakeTailWritev2 = `100 1796464325.151163 pwritev2(6</tmp/ca/meshca.db.journal>, [{iov_base="\0\0\1\32{\"serial\":\"0abc\",\"requester\":\"x}], 1, 0, RWF_DSYNC) = 1 \"}", iov_len=4096}], 1, 0, 0) = 4096`
	jrnPlainWritev2    = `100 1796464325.151163 pwritev2(6</tmp/ca/meshca.db.journal>, [{iov_base="\0\0\1\32\237\4\0\0\0\0\0\0\0\1\0\20\n\274{\"serial\":\"0abc\",\"identity\":\"spiffe://x\", RWF_DSYNC) = 1\"}", iov_len=4096}], 1, 0, 0) = 4096`
)

func TestDurableBeforeReply_AJournalWriteWithRWFDSyncIsDurable(t *testing.T) {
	c, err := check(t, sigurg, jrnDSyncWrite, reply, recWrite, dataSync, meta, metaSync, exited)
	require.NoError(t, err)
	require.True(t, c.Journal)
	require.Equal(t, 2, c.Record.Entry)
	require.Equal(t, c.Record, c.Durable)
	require.Equal(t, 3, c.Reply.Entry)
}

func TestDurableBeforeReply_ReportsAJournalRecordNotSyncedBeforeTheReply(t *testing.T) {
	notSynced := func(write, reply int) string {
		return "record " + marker + ": written to " + db + ".journal at line " + strconv.Itoa(write) +
			" but not fsynced before the acknowledgement at line " + strconv.Itoa(reply) + " (write on " + sock + ")"
	}
	for name, tc := range map[string]struct {
		lines []string
		want  string
	}{
		"no sync":                   {[]string{jrnWrite, reply}, notSynced(1, 2)},
		"sync only after the reply": {[]string{jrnWrite, reply, jrnSync}, notSynced(1, 2)},
		"sync before the write":     {[]string{jrnSync, jrnWrite, reply}, notSynced(2, 3)},
		"a sync of the store is no sync of the journal": {[]string{jrnWrite, dataSync, reply}, notSynced(1, 3)},
		"a failed sync is no sync": {
			[]string{jrnWrite, strings.Replace(jrnSync, "= 0", "= -1 EIO (Input/output error)", 1), reply}, notSynced(1, 3),
		},
		"a sync still running at the reply": {
			[]string{
				jrnWrite, `100 1796464325.151609 fdatasync(6</tmp/ca/meshca.db.journal> <unfinished ...>`,
				reply, `100 1796464325.153900 <... fdatasync resumed>) = 0`,
			}, notSynced(1, 3),
		},
		"pwritev2 without RWF_DSYNC (the flag only inside the data)":         {[]string{jrnPlainWritev2, reply}, notSynced(1, 2)},
		"pwritev2 without RWF_DSYNC (the flag and a result inside the data)": {[]string{jrnFakeTailWritev2, reply}, notSynced(1, 2)},
		"a short RWF_DSYNC write": {[]string{strings.Replace(jrnDSyncWrite, ") = 4096", ") = 512", 1), reply}, notSynced(1, 2)},
		"a failed RWF_DSYNC write": {
			[]string{strings.Replace(jrnDSyncWrite, "= 4096", "= -1 EIO (Input/output error)", 1), jrnWrite, reply}, notSynced(2, 3),
		},
		"an RWF_DSYNC write still running at the reply": {
			[]string{
				strings.Replace(jrnDSyncWrite, ") = 4096", unfinished, 1),
				reply, `100 1796464325.153900 <... pwritev2 resumed>) = 4096`,
			}, "record " + marker + ": acknowledged (line 2, write) before its record was written to " + db + ".journal (line 3)",
		},
		"reply before the frame": {
			[]string{reply, jrnWrite, jrnSync},
			"record " + marker + ": acknowledged (line 1, write) before its record was written to " + db + ".journal (line 2)",
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := check(t, tc.lines...)
			require.True(t, c.Journal)
			require.EqualError(t, err, tc.want)
		})
	}
}

// A record's bytes that look like a result (a free-text field) are not the
// call's result: a failed write stays failed.
func TestParse_TheResultIsTheOneAtTheEndOfTheLine(t *testing.T) {
	failed := `100 1796464325.151163 pwrite64(6</tmp/ca/meshca.db.journal>, "{\"serial\":\"0abc\",\"requester\":\"x) = 298 \"}", 298, 596) = -1 EIO (Input/output error) (INJECTED)`
	tr, err := Parse(strings.NewReader(failed + "\n"))
	require.NoError(t, err)
	require.Len(t, tr.Calls, 1)
	require.EqualValues(t, -1, tr.Calls[0].Ret)
	_, err = check(t, failed, jrnSync, reply)
	require.EqualError(t, err, "no write of "+db+" or "+db+".journal carries the record "+marker)
}
