package intermediate

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation"
)

// The child process: the test binary re-executed with these variables
// runs a Manager on the CA in childDir (a real bbolt file and key store)
// with a fake clock at childNow. It prints "STEP <step> <generation>"
// after each journal step and, at childStop, stops there until it is
// killed; "SUB <generation>" when its subscriber runs; once Run has
// evaluated (and, with childThen, again after the clock moved there) it
// prints "DONE <active generation>" and exits.
const (
	childDir  = "INTROT_CHILD_DIR"
	childNow  = "INTROT_CHILD_NOW"
	childThen = "INTROT_CHILD_THEN"
	childStop = "INTROT_CHILD_STOP"
)

func TestMain(m *testing.M) {
	if os.Getenv(childDir) != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

func childMain() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 2 }
	cfg := testConfig(os.Getenv(childDir))
	now, err := strconv.ParseInt(os.Getenv(childNow), 10, 64)
	if err != nil {
		return fail(err)
	}
	clk := clocktesting.NewFakeClock(time.Unix(0, now))
	p, err := newParts(cfg, clk)
	if err != nil {
		return fail(err)
	}
	defer p.close()
	stop := Step(os.Getenv(childStop))
	m := New(Options{Config: cfg, Keys: p.km, Store: p.st, Root: p.src, Clock: clk,
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		OnStep: func(s Step, gen uint64) {
			fmt.Printf("STEP %s %d\n", s, gen)
			if s == stop {
				select {} // killed here
			}
		}})
	m.Subscribe(func(_ context.Context, c rotation.Change) error {
		fmt.Printf("SUB %d\n", c.Active.Generation)
		return nil
	})
	if _, err := m.Start(context.Background()); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	settle := func() {
		for m.lastEval.Load() != clk.Now().UnixNano() || !clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
	}
	settle()
	if then := os.Getenv(childThen); then != "" {
		t, err := strconv.ParseInt(then, 10, 64)
		if err != nil {
			return fail(err)
		}
		clk.SetTime(time.Unix(0, t))
		settle()
	}
	fmt.Printf("DONE %d\n", m.Active().Generation)
	return 0
}

// child is one run of the child process.
type child struct {
	cmd   *exec.Cmd
	lines chan string
}

func startChild(t *testing.T, dir string, now, then time.Time, stop Step) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childDir+"="+dir, childNow+"="+strconv.FormatInt(now.UnixNano(), 10), childStop+"="+string(stop))
	if !then.IsZero() {
		cmd.Env = append(cmd.Env, childThen+"="+strconv.FormatInt(then.UnixNano(), 10))
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd, lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("child stderr:\n%s", stderr.String())
		}
	})
	return c
}

// until reads the child's lines until want, returning the ones before it.
func (c *child) until(t *testing.T, want string) []string {
	t.Helper()
	var seen []string
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("the child exited before %q; it printed %q", want, seen)
			}
			if l == want {
				return seen
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("no %q from the child within 60s; it printed %q", want, seen)
		}
	}
}

// kill9 SIGKILLs the child and waits for it.
func (c *child) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	err := c.cmd.Wait()
	require.Error(t, err, "the child was killed")
	require.Equal(t, syscall.SIGKILL, c.cmd.ProcessState.Sys().(syscall.WaitStatus).Signal())
}

// journal opens the child's bbolt file (after the child died) and returns
// the generations.
func journal(t *testing.T, dir string) []store.Generation {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(dir, "meshca.db"))
	require.NoError(t, err)
	defer st.Close()
	gens, err := st.ListGenerations(context.Background())
	require.NoError(t, err)
	active := 0
	for _, g := range gens {
		if g.Active() {
			active++
		}
	}
	require.Equal(t, 1, active, "exactly one active generation after a kill -9: %+v", gens)
	return gens
}

// kill -9 in each phase of a rotation (right after the prepared record,
// right after the verified record, right after the activation and before
// any subscriber ran), then a restart: the journal resumes, the prepared
// successor is reused and never minted again, there is exactly one active
// generation at every point, and the rotation completes.
func TestManager_KillNineInEachPhaseResumes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	cfg := testConfig(dir)
	createRoot(t, cfg)

	c := startChild(t, dir, t0, time.Time{}, "")
	c.until(t, "DONE 1")
	require.NoError(t, c.cmd.Wait())
	gens := journal(t, dir)
	require.Len(t, gens, 1)
	first, err := x509.ParseCertificate(gens[0].CertDER)
	require.NoError(t, err)
	at := func(f float64) time.Time {
		return first.NotBefore.Add(time.Duration(float64(first.NotAfter.Sub(first.NotBefore)) * f))
	}
	prepareAt, activateAt := at(0.5), at(0.66)

	// Killed right after the successor was recorded as prepared.
	c = startChild(t, dir, prepareAt.Add(time.Second), time.Time{}, StepPrepared)
	c.until(t, "STEP prepared 2")
	c.kill9(t)
	gens = journal(t, dir)
	require.Len(t, gens, 2)
	require.Equal(t, store.StateActive, gens[0].State())
	require.Equal(t, store.StatePrepared, gens[1].State())
	require.True(t, gens[1].VerifiedAt.IsZero())
	keysAfterMint := keyFiles(t, cfg)

	// Restarted, it verifies that successor instead of minting another,
	// and is killed right after the verified record.
	c = startChild(t, dir, prepareAt.Add(time.Second), time.Time{}, StepVerified)
	before := c.until(t, "STEP verified 2")
	require.NotContains(t, before, "STEP prepared 3", "the prepared successor is reused, not minted again")
	c.kill9(t)
	gens = journal(t, dir)
	require.Len(t, gens, 2)
	require.Equal(t, store.StateActive, gens[0].State())
	require.Equal(t, store.StatePrepared, gens[1].State())
	require.False(t, gens[1].VerifiedAt.IsZero())
	require.Equal(t, keysAfterMint, keyFiles(t, cfg), "no key is created for another successor")

	// Restarted before the activation threshold, it keeps the successor in
	// the next slot; when the clock passes the threshold it activates it
	// and is killed before any subscriber ran.
	c = startChild(t, dir, activateAt.Add(-time.Second), activateAt.Add(time.Second), StepActivated)
	before = c.until(t, "STEP activated 2")
	require.NotContains(t, before, "SUB 2")
	require.NotContains(t, before, "STEP prepared 3")
	c.kill9(t)
	gens = journal(t, dir)
	require.Len(t, gens, 2)
	require.Equal(t, store.StateRetired, gens[0].State())
	require.Equal(t, store.StateActive, gens[1].State())
	require.Equal(t, keysAfterMint, keyFiles(t, cfg))

	// Restarted, it signs with the activated successor and the rotation is
	// complete: nothing more is minted.
	c = startChild(t, dir, activateAt.Add(time.Second), time.Time{}, "")
	before = c.until(t, "DONE 2")
	require.NotContains(t, strings.Join(before, "\n"), "STEP prepared")
	require.NoError(t, c.cmd.Wait())
	gens = journal(t, dir)
	require.Len(t, gens, 2)
	require.Equal(t, store.StateActive, gens[1].State())
	require.Equal(t, keysAfterMint, keyFiles(t, cfg))
}
