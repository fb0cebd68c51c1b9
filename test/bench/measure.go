package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	ops     int64
	elapsed time.Duration
}

func (r result) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// measure runs op from workers goroutines for d after a short warm-up and
// prints a progress dot every second.
func measure(ctx context.Context, d time.Duration, workers int, op func(context.Context, int) error) (result, error) {
	// Warm-up: caches, pools, bbolt pages.
	for i := 0; i < 50; i++ {
		if err := op(ctx, i); err != nil {
			return result{}, err
		}
	}
	var (
		ops      atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; ; i += workers {
				select {
				case <-stop:
					return
				default:
				}
				if err := op(ctx, i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				ops.Add(1)
			}
		}(w)
	}
	tick := time.NewTicker(time.Second)
	deadline := time.After(d)
loop:
	for {
		select {
		case <-tick.C:
			fmt.Printf("  %5.1fs  %d ops\n", time.Since(start).Seconds(), ops.Load())
		case <-deadline:
			break loop
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return result{}, err
	}
	return result{ops: ops.Load(), elapsed: elapsed}, nil
}
