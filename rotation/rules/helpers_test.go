package rules

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation/alert"
	"github.com/meshca/meshca/rotation/inventory"
)

// T0 is when every test starts.
var T0 = time.Date(2026, time.May, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// newCert makes a self-signed CA certificate named cn with serial, valid [nb, na].
func newCert(t *testing.T, cn string, serial int64, nb, na time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// listSource is an inventory.Source over a list the test changes.
type listSource struct {
	mu    sync.Mutex
	certs []inventory.Certificate
	err   error
}

func (s *listSource) Name() string { return "test" }

func (s *listSource) Certificates(context.Context) ([]inventory.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]inventory.Certificate(nil), s.certs...), s.err
}

func (s *listSource) set(err error, certs ...inventory.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs, s.err = certs, err
}

// sweeping runs a Sweeper on a fake clock.
type sweeping struct {
	stop  func()
	s     *Sweeper
	clk   *testclock.FakeClock
	e     *alert.Engine
	swept chan time.Time
}

// startSweeper runs rules every hour on clk, raising into e (a new
// engine without sinks or store when nil), and waits for the first sweep.
func startSweeper(t *testing.T, clk *testclock.FakeClock, e *alert.Engine, rules ...Rule) *sweeping {
	t.Helper()
	if e == nil {
		var err error
		e, err = alert.New(context.Background(), alert.Options{Clock: clk, Log: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
	}
	sw := &sweeping{clk: clk, e: e, swept: make(chan time.Time, 16)}
	sw.s = &Sweeper{Alerts: e, Rules: rules, Interval: time.Hour, Clock: clk, Log: slog.New(slog.DiscardHandler),
		ticking: make(chan struct{}), swept: sw.swept}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sw.s.Run(ctx) }()
	stopped := false
	sw.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(sw.stop)
	<-sw.s.ticking
	sw.wait(t, clk.Now())
	return sw
}

// wait waits for the sweep made at now.
func (sw *sweeping) wait(t *testing.T, now time.Time) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case at := <-sw.swept:
			if !at.Before(now) {
				return
			}
		case <-deadline:
			t.Fatalf("no sweep at %s", now)
		}
	}
}

// to moves the clock to at hour by hour (one sweep each) and waits for the last sweep.
func (sw *sweeping) to(t *testing.T, at time.Time) {
	t.Helper()
	for sw.clk.Now().Before(at) {
		step := min(time.Hour, at.Sub(sw.clk.Now()))
		sw.clk.Step(step)
		if step == time.Hour {
			sw.wait(t, sw.clk.Now())
		}
	}
}

// firing is the engine's firing alerts as key -> severity.
func (sw *sweeping) firing() map[string]string {
	out := map[string]string{}
	for _, s := range sw.e.Firing() {
		out[s.Key] = s.Severity
	}
	return out
}

func firingState(t *testing.T, e *alert.Engine, key string) store.AlertState {
	t.Helper()
	for _, s := range e.Firing() {
		if s.Key == key {
			return s
		}
	}
	t.Fatalf("%s does not fire", key)
	return store.AlertState{}
}
