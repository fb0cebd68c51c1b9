package alert

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"
)

// T0 is when every test starts.
var T0 = time.Date(2026, time.May, 1, 12, 0, 0, 0, time.UTC)

// secretPath is the path of the webhook URLs: the part of a Slack
// webhook URL that is its credential.
const secretPath = "/services/T0MESHCA/B0ALERTS/s3cr3tW3bh00kT0k3n"

// answer is what the fake receiver says to one request.
type answer struct {
	status     int
	body       string
	retryAfter string
	block      chan struct{} // if set, the answer waits for it to close
}

// receiver stands in for Slack or an Alertmanager webhook receiver.
type receiver struct {
	srv     *httptest.Server
	got     chan string
	mu      sync.Mutex
	answers []answer // scripted, in order; then okAnswer
	ok      answer
	urlFile string
}

func newReceiver(t *testing.T, ok answer, answers ...answer) *receiver {
	r := &receiver{got: make(chan string, 1024), answers: answers, ok: ok}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		if req.Method != http.MethodPost || req.URL.Path != secretPath || req.Header.Get("Content-Type") != "application/json" {
			t.Errorf("unexpected request %s %s (Content-Type %q)", req.Method, req.URL.Path, req.Header.Get("Content-Type"))
		}
		r.got <- string(b)
		r.mu.Lock()
		a := r.ok
		if len(r.answers) > 0 {
			a, r.answers = r.answers[0], r.answers[1:]
		}
		r.mu.Unlock()
		if a.block != nil {
			<-a.block
		}
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(r.srv.Close)
	r.urlFile = filepath.Join(t.TempDir(), "url")
	require.NoError(t, os.WriteFile(r.urlFile, []byte(r.srv.URL+secretPath+"\n"), 0o600))
	return r
}

var slackOK = answer{status: 200, body: "ok"}

// next returns the next request body.
func (r *receiver) next(t *testing.T) string {
	t.Helper()
	select {
	case b := <-r.got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the receiver")
		return ""
	}
}

// none checks that no request has arrived.
func (r *receiver) none(t *testing.T) {
	t.Helper()
	select {
	case b := <-r.got:
		t.Fatalf("unexpected request: %s", b)
	default:
	}
}

type sleep struct {
	sink string
	d    time.Duration
}

// harness runs an engine on a fake clock.
type harness struct {
	e       *Engine
	clk     *testclock.FakeClock
	sleeps  chan sleep
	acked   chan Notification
	cancel  context.CancelFunc
	stopped chan struct{}
}

func startEngine(t *testing.T, clk *testclock.FakeClock, states store.AlertStates, opts Options, sinks ...Sink) *harness {
	t.Helper()
	opts.States, opts.Sinks, opts.Clock = states, sinks, clk
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.RepeatInterval == 0 {
		opts.RepeatInterval = time.Hour
	}
	e, err := New(context.Background(), opts)
	require.NoError(t, err)
	h := &harness{e: e, clk: clk, sleeps: make(chan sleep, 64), acked: make(chan Notification, 64), stopped: make(chan struct{})}
	e.ticking = make(chan struct{})
	e.afterDelivered = func(n Notification) { h.acked <- n }
	for _, w := range e.workers {
		w.waiting = func(sink string, d time.Duration) { h.sleeps <- sleep{sink, d} }
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.stopped)
		if err := e.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-e.ticking
	t.Cleanup(h.stop)
	return h
}

// rerun runs the engine again after stop (a replica that leads again).
func (h *harness) rerun(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	h.cancel, h.stopped = cancel, stopped
	go func() {
		defer close(stopped)
		if err := h.e.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
}

func (h *harness) stop() {
	h.cancel()
	<-h.stopped
}

// sleep returns the next delay a worker waits.
func (h *harness) sleep(t *testing.T) sleep {
	t.Helper()
	select {
	case s := <-h.sleeps:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no worker waited")
		return sleep{}
	}
}

// ack waits until a notification is delivered by every sink.
func (h *harness) ack(t *testing.T) Notification {
	t.Helper()
	select {
	case n := <-h.acked:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification was delivered")
		return Notification{}
	}
}
