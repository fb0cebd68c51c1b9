package rootrotation

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
)

// Start reads and asks the new root without the controller's lock: while
// one source hangs, RotationStatus answers and another Start goes through;
// the hung Start, once its source answers, finds that rotation and is
// refused without journaling anything.
func TestStart_ValidatesTheNewRootWithoutHoldingTheLock(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	slow := newFileRoot(t, "root slow", t0.Add(-time.Minute), 10*365*24*time.Hour)
	entered, release := make(chan struct{}), make(chan struct{})
	build := h.c.o.NewSource
	h.c.o.NewSource = func(ctx context.Context, rc config.RootConfig) (root.Source, error) {
		if rc.File.RootCert == slow.spec.File.RootCert {
			close(entered)
			<-release
		}
		return build(ctx, rc)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := h.c.Start(ctx, StartRequest{NewRoot: slow.spec, By: "slow"})
		errc <- err
	}()
	<-entered
	status := make(chan struct{})
	go func() { h.c.RotationStatus(); close(status) }()
	select {
	case <-status:
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("RotationStatus blocked behind a Start whose new root's source does not answer")
	}
	h.start() // B, while the slow one hangs
	close(release)
	select {
	case err := <-errc:
		require.Equal(t, caerr.FailedPrecondition, caerr.CodeOf(err), "%v", err)
		require.ErrorContains(t, err, "is in phase publish-both-roots")
	case <-time.After(10 * time.Second):
		t.Fatal("the slow Start did not return")
	}
	require.Equal(t, h.b.cert.Raw, h.journal().NewRootDER, "the rotation to B stays journaled")
}

// The new root's files are read only when they are regular files of at
// most 1 MiB: a FIFO (which would block the read forever), a device
// (/dev/zero, endless) or a huge file is refused at once with a clear
// error, and nothing is journaled.
func TestStart_RefusesANewRootFileThatIsNotASmallRegularFile(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	huge := filepath.Join(dir, "huge.pem")
	require.NoError(t, os.WriteFile(huge, make([]byte, 2<<20), 0o600))
	withCert, withKey := func(p string) config.RootConfig {
		s := h.b.spec
		s.File.RootCert = p
		return s
	}, func(p string) config.RootConfig {
		s := h.b.spec
		s.File.RootKey = p
		return s
	}
	for name, tc := range map[string]struct {
		spec config.RootConfig
		msg  string
	}{
		"cert is a FIFO":   {withCert(fifo), "root.file.rootCert " + fifo + " is not a regular file"},
		"cert is a device": {withCert("/dev/zero"), "root.file.rootCert /dev/zero is not a regular file"},
		"cert is huge":     {withCert(huge), "root.file.rootCert " + huge + " is larger than 1048576 bytes"},
		"key is huge":      {withKey(huge), "key file " + huge + " is larger than 1048576 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() {
				_, err := h.c.Start(ctx, StartRequest{NewRoot: tc.spec, By: "test"})
				errc <- err
			}()
			select {
			case err := <-errc:
				require.Equal(t, caerr.InvalidArgument, caerr.CodeOf(err), "%v", err)
				require.ErrorContains(t, err, tc.msg)
			case <-time.After(10 * time.Second):
				t.Fatal("Start did not return within 10s")
			}
			_, err := h.st.GetRootRotation(ctx)
			require.ErrorIs(t, err, store.ErrNotFound, "nothing journaled")
		})
	}
}

// blockingRecords holds ListIssuances until released: phase 2's count of
// a million records takes seconds.
type blockingRecords struct {
	Store
	entered, release chan struct{}
}

func (b *blockingRecords) ListIssuances(ctx context.Context, fn func(store.Issuance) bool) error {
	close(b.entered)
	<-b.release
	return b.Store.ListIssuances(ctx, fn)
}

// RotationStatus (a metrics scrape, meshca status, the alert rules) does
// not wait for a step that reads the issuance records: it answers with the
// status as of the last step.
func TestController_StatusDoesNotWaitForAStepReadingTheRecords(t *testing.T) {
	h := newHarness(t)
	h.issue("01", 72*time.Hour)
	h.start()
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	want := h.c.RotationStatus()
	b := &blockingRecords{Store: h.c.o.Store, entered: make(chan struct{}), release: make(chan struct{})}
	h.c.o.Store = b
	stepped := make(chan struct{})
	go func() { h.c.Step(context.Background()); close(stepped) }()
	<-b.entered
	got := make(chan rotation.Status, 1)
	go func() { got <- h.c.RotationStatus() }()
	select {
	case st := <-got:
		require.Equal(t, want, st)
	case <-time.After(5 * time.Second):
		close(b.release)
		t.Fatal("RotationStatus waited for the step reading the issuance records")
	}
	close(b.release)
	<-stepped
}
