package rootrotation

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
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
