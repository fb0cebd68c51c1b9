package leader

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/test/logbuf"
)

// stallProxy forwards TCP to the apiserver until stall is set; from then
// on it accepts and reads but forwards nothing either way, as a
// blackholed network path or a load balancer that stalls does: requests
// hang until the client gives up, instead of failing fast.
type stallProxy struct {
	ln    net.Listener
	stall atomic.Bool
	// hold delays the bytes instead: while it is set nothing is
	// forwarded, and what was read is forwarded once it is cleared, as a
	// slow path does.
	hold atomic.Bool
	wg   sync.WaitGroup
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &stallProxy{ln: ln}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c, target) })
		}
	})
	t.Cleanup(func() { _ = ln.Close() })
	return p
}

func (p *stallProxy) serve(c net.Conn, target string) {
	defer c.Close()
	if p.stall.Load() {
		_, _ = io.Copy(io.Discard, c)
		return
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			for p.hold.Load() {
				time.Sleep(time.Millisecond)
			}
			if n > 0 && !p.stall.Load() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	done := make(chan struct{}, 2)
	go func() { pipe(up, c); done <- struct{}{} }()
	go func() { pipe(c, up); done <- struct{}{} }()
	<-done
}

// runBehindProxy runs elector replica-a on Lease name through a stallProxy
// to the apiserver, with a job, until the test ends, and returns once its
// job runs.
func runBehindProxy(t *testing.T, name string, leaseDuration, renewDeadline, retryPeriod time.Duration) (*stallProxy, *Elector, *terms) {
	t.Helper()
	u, err := url.Parse(env.Config.Host)
	require.NoError(t, err)
	proxy := newStallProxy(t, u.Host)
	rc := rest.CopyConfig(env.Config)
	rc.Host = "https://" + proxy.ln.Addr().String()
	e, err := New(rc, Options{
		Namespace: "default", Name: name, Identity: "replica-a",
		LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod, StopWait: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(logbuf.ForTest(t), nil)),
	})
	require.NoError(t, err)
	ts := &terms{}
	e.Go("job", ts.job("replica-a", e))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() {
		proxy.stall.Store(false)
		proxy.hold.Store(false)
		cancel()
		<-done
	})
	waitUntil(t, 10*time.Second, "the replica leads", func() bool { return ts.running() != "" })
	return proxy, e, ts
}

// When the apiserver stops answering (requests hang rather than fail),
// client-go notices the lost Lease only after trying, for another renew
// deadline, to release it: past the lease duration, when another replica
// may already run the jobs. The jobs must stop within the renew deadline
// of the last renewal, well inside the lease duration.
func TestRun_JobsStopWithinTheRenewDeadlineWhenTheApiserverHangs(t *testing.T) {
	const leaseDuration, renewDeadline = 4 * time.Second, 2 * time.Second
	proxy, _, ts := runBehindProxy(t, "stalled", leaseDuration, renewDeadline, 250*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // a renewal or two
	stalled := time.Now()
	proxy.stall.Store(true)
	waitUntil(t, leaseDuration+renewDeadline+5*time.Second, "the job stops", func() bool { return ts.running() == "" })
	got := ts.snapshot()
	took := got[0].end.Sub(stalled)
	t.Logf("the job stopped %s after the apiserver stalled", took.Round(time.Millisecond))
	require.Less(t, took, leaseDuration-500*time.Millisecond, "the job outlived the Lease another replica may take")
}

// The watchdog stops the jobs once the Lease has gone unrenewed for the
// renew deadline, but client-go keeps trying to renew for up to a retry
// period longer. A renewal that lands in that gap (a slow apiserver, not a
// dead one) must not leave the replica holding a renewed Lease with no job
// running until it restarts: the term ends with the watchdog, and the
// replica campaigns again and runs its jobs once it leads.
func TestRun_ALateRenewalAfterTheWatchdogDoesNotLeaveTheLeaseHeldWithoutJobs(t *testing.T) {
	const renewDeadline = 2 * time.Second
	proxy, e, ts := runBehindProxy(t, "slow", 4*time.Second, renewDeadline, time.Second)
	// Right after a renewal, hold the path past the renew deadline and
	// release it before the attempt under way times out (a retry period
	// after the renewal plus the renew deadline).
	last := e.renewed.last.Load()
	waitUntil(t, 5*time.Second, "a renewal", func() bool { return e.renewed.last.Load() != last })
	proxy.hold.Store(true)
	waitUntil(t, 2*renewDeadline, "the watchdog stops the job", func() bool { return ts.running() == "" })
	proxy.hold.Store(false)
	waitUntil(t, 5*time.Second, "the late renewal lands", func() bool {
		return time.Since(time.Unix(0, e.renewed.last.Load())) < renewDeadline
	})
	waitUntil(t, 15*time.Second, "the job runs again while the replica holds the Lease", func() bool {
		_, leading := e.Leading()
		return ts.running() == "replica-a" && leading
	})
	require.Equal(t, int64(1), e.Lost(), "the term the watchdog ended counts as lost")
}
