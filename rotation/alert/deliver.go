package alert

import (
	"context"
	"errors"
	"math"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Sink delivers notifications somewhere.
type Sink interface {
	// Name names the sink in logs and metrics ("slack", "webhook").
	Name() string
	// Send delivers n once. A *DeliveryError says whether and when to retry;
	// any other error is retried with backoff.
	Send(ctx context.Context, n Notification) error
	// MinInterval is the least time between two deliveries (a rate limit
	// of the receiver).
	MinInterval() time.Duration
}

// DeliveryError is a failed delivery as the receiver answered it.
type DeliveryError struct {
	// Status is the HTTP status (0: no answer).
	Status int
	// RetryAfter is the receiver's Retry-After (RFC 9110 section 10.2.3), if any.
	RetryAfter time.Duration
	// Permanent says that retrying the same message cannot succeed.
	Permanent bool
	Err       error
}

func (e *DeliveryError) Error() string { return e.Err.Error() }
func (e *DeliveryError) Unwrap() error { return e.Err }

const (
	// queueSize bounds each sink's queue; beyond it notifications are
	// dropped (and counted), so a dead sink never holds the engine.
	queueSize = 256
	// maxAttempts bounds the deliveries of one notification.
	maxAttempts = 8
	// maxRetryAfter caps a receiver's Retry-After, so that a receiver
	// cannot stall its queue for long.
	maxRetryAfter = 10 * time.Minute
)

// retryBackoff is the delay between attempts after a failure without
// Retry-After: 1s doubling up to 5m, with 10% jitter.
func retryBackoff() wait.Backoff {
	return wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: 5 * time.Minute}
}

// worker delivers one sink's queue in order.
type worker struct {
	sink Sink
	e    *Engine
	q    chan *delivery
	// waiting, when set (tests), is told each delay before it is waited.
	waiting func(sink string, d time.Duration)
}

func newWorker(s Sink, e *Engine) *worker {
	return &worker{sink: s, e: e, q: make(chan *delivery, queueSize)}
}

// drain empties the queue without delivering.
func (w *worker) drain() {
	for {
		select {
		case <-w.q:
		default:
			return
		}
	}
}

func (w *worker) enqueue(d *delivery) {
	select {
	case w.q <- d:
	default:
		w.e.metrics.result(w.sink.Name(), resultDropped)
		w.e.log.Error("alert sink queue full; notification dropped (delivered again later)", "sink", w.sink.Name(), "alert", d.n.State.Rule, "object", d.n.State.Object, "kind", d.n.Kind)
		d.fail(w.sink.Name())
		d.done()
	}
}

func (w *worker) run(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-w.q:
			sent, ok := w.deliver(ctx, d, &last)
			if !ok {
				return // shutting down: the notification stays pending
			}
			if !sent {
				d.fail(w.sink.Name())
			}
			d.done()
		}
	}
}

// deliver sends d with retries. ok false means ctx ended first; sent
// false that it gave up (the receiver kept failing), so that the engine
// delivers it again later. A receiver's permanent refusal counts as sent:
// the same message would be refused again.
func (w *worker) deliver(ctx context.Context, d *delivery, last *time.Time) (sent, ok bool) {
	name := w.sink.Name()
	bo := retryBackoff()
	for attempt := 1; ; attempt++ {
		if !last.IsZero() {
			if gap := last.Add(w.sink.MinInterval()).Sub(w.e.clk.Now()); gap > 0 && !w.sleep(ctx, gap) {
				return false, false
			}
		}
		err := w.sink.Send(ctx, d.n)
		*last = w.e.clk.Now()
		if err == nil {
			w.e.metrics.result(name, resultSent)
			return true, true
		}
		if ctx.Err() != nil {
			return false, false
		}
		var de *DeliveryError
		isDE := errors.As(err, &de)
		log := w.e.log.With("sink", name, "alert", d.n.State.Rule, "object", d.n.State.Object, "kind", d.n.Kind, "attempt", attempt, "error", err)
		if isDE && de.Permanent {
			w.e.metrics.result(name, resultFailed)
			log.Error("alert notification refused by the receiver; not retrying")
			return true, true
		}
		if attempt >= maxAttempts {
			w.e.metrics.result(name, resultFailed)
			log.Error("alert notification failed; delivering it again later (5 min, then twice as long each time)")
			return false, true
		}
		delay := bo.Step()
		if isDE && de.RetryAfter > 0 {
			delay = min(de.RetryAfter, maxRetryAfter)
		}
		w.e.metrics.result(name, resultRetried)
		log.Warn("alert notification failed; retrying", "retry_in", delay)
		if !w.sleep(ctx, delay) {
			return false, false
		}
	}
}

func (w *worker) sleep(ctx context.Context, d time.Duration) bool {
	t := w.e.clk.NewTimer(d)
	defer t.Stop()
	if w.waiting != nil {
		w.waiting(w.sink.Name(), d)
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}
