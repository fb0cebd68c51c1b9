package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/test/logbuf"
)

// gate is a TCP path to the real apiserver that can be cut: while closed,
// its port refuses connections, as a down apiserver's does.
type gate struct {
	addr   string
	target string
	ln     atomic.Pointer[net.Listener]
}

// newGate reserves a loopback port and leaves it closed.
func newGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := &gate{addr: ln.Addr().String(), target: target}
	require.NoError(t, ln.Close())
	t.Cleanup(func() {
		if ln := g.ln.Load(); ln != nil {
			(*ln).Close()
		}
	})
	return g
}

// open starts forwarding the port to the apiserver.
func (g *gate) open(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", g.addr)
	require.NoError(t, err)
	g.ln.Store(&ln)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go proxy(c, g.target)
		}
	}()
}

func proxy(c net.Conn, target string) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(up, c) }()
	_, _ = io.Copy(c, up)
}

// gatedClient is the meshca ServiceAccount's client, and its rest.Config,
// through a gate.
func gatedClient(t *testing.T) (kubernetes.Interface, *rest.Config, *gate) {
	t.Helper()
	meshcaClient(t) // RBAC
	rc, _, err := env.ClientAs(testContext(t), istiod, "meshca")
	require.NoError(t, err)
	u, err := url.Parse(rc.Host)
	require.NoError(t, err)
	g := newGate(t, u.Host)
	_, port, err := net.SplitHostPort(g.addr)
	require.NoError(t, err)
	rc = rest.CopyConfig(rc)
	u.Host = net.JoinHostPort(u.Hostname(), port) // the same name, for TLS
	rc.Host = u.String()
	client, err := kubernetes.NewForConfig(rc)
	require.NoError(t, err)
	return client, rc, g
}

var retryIn = regexp.MustCompile(`msg="ClusterTrustBundle discovery failed; retrying" component=trustbundle in=(\S+)`)

// While the apiserver cannot be reached, ClusterTrustBundle discovery is
// retried after 200ms, doubling up to 30s, without jitter; the first
// answer ends the retries, and the publisher then watches and writes the
// discovered version through the manager's cache.
func TestClusterTrustBundleDiscovery_RetriesWithCappedBackoffUntilTheApiserverAnswers(t *testing.T) {
	client, rc, g := gatedClient(t)
	clk := testingclock.NewFakeClock(time.Now())
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	p, err := New(client, config.TrustBundleConfig{}, WithClock(clk), WithLogger(log), WithResync(0))
	require.NoError(t, err)
	base := clk.Waiters() // the workqueue's own heartbeat
	ctx, cancel := context.WithCancel(testContext(t))
	discovered := make(chan error, 1)
	go func() { discovered <- p.Discover(ctx) }()
	t.Cleanup(cancel)

	want := []string{"200ms", "400ms", "800ms", "1.6s", "3.2s", "6.4s", "12.8s", "25.6s", "30s", "30s"}
	for i, d := range want {
		waitFor(t, 10*time.Second, "retry "+d, func() error {
			if clk.Waiters() != base+1 {
				return fmt.Errorf("discovery does not wait on the clock (%d waiters, base %d): %s", clk.Waiters(), base, logs.String())
			}
			if n := len(retryIn.FindAllString(logs.String(), -1)); n != i+1 {
				return errors.New("retry not logged")
			}
			return nil
		})
		got := retryIn.FindAllStringSubmatch(logs.String(), -1)
		require.Equal(t, d, got[i][1], "delay before retry %d", i+1)
		if i == len(want)-1 {
			g.open(t) // the apiserver is back
		}
		step, err := time.ParseDuration(d)
		require.NoError(t, err)
		clk.Step(step)
	}
	select {
	case err := <-discovered:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("discovery did not end within 30s of the apiserver answering")
	}
	require.Equal(t, "v1", p.ctbVersion)
	require.Len(t, retryIn.FindAllString(logs.String(), -1), len(want), "no retry after the apiserver answered")

	mgr := newManager(t, rc, p, log)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	// Logged right after the watch is set up.
	waitFor(t, 30*time.Second, "ClusterTrustBundles watched", func() error {
		if p.ctb.Load() == nil {
			return errors.New("not watched")
		}
		if !strings.Contains(logs.String(), `msg="publishing ClusterTrustBundles" component=trustbundle apiVersion=certificates.k8s.io/v1`) {
			return errors.New("not logged")
		}
		return nil
	})
}
