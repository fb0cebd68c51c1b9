// Command bench measures meshca's issuance throughput against a baseline
// measured in the same run, and prints each result as a ratio, because
// machines are noisy. It is not a timed test: run it with `make bench`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"text/tabwriter"
	"time"
)

func main() {
	duration := flag.Duration("duration", 4*time.Second, "measuring time per scenario")
	concurrency := flag.Int("concurrency", 64, "concurrent callers for the engine scenario")
	flag.Parse()
	if err := run(context.Background(), *duration, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, d time.Duration, concurrency int) error {
	cores := runtime.GOMAXPROCS(0)
	fmt.Printf("meshca bench: %d cores, %s per scenario\n", cores, d)
	fx, err := newFixture(ctx)
	if err != nil {
		return err
	}
	defer fx.close()

	fmt.Println("[1/3] crypto limit: parse+check CSR, sign, verify (in process, one worker per core)")
	limit, err := measure(ctx, d, cores, fx.cryptoOnce)
	if err != nil {
		return err
	}
	fmt.Printf("[2/3] engine: CSR -> policy -> sign -> durable bbolt record -> PEM chain (%d callers)\n", concurrency)
	engine, err := measure(ctx, d, concurrency, fx.engineOnce)
	if err != nil {
		return err
	}

	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nSCENARIO\tOPS\tOPS/S\tOPS/S/CORE\tRATIO TO LIMIT")
	fmt.Fprintf(w, "crypto limit\t%d\t%.0f\t%.0f\t1.00\n", limit.ops, limit.rate(), limit.rate()/float64(cores))
	fmt.Fprintf(w, "engine\t%d\t%.0f\t%.0f\t%.2f\n", engine.ops, engine.rate(), engine.rate()/float64(cores), engine.rate()/limit.rate())
	w.Flush()
	verdict := "meets"
	if engine.rate()/limit.rate() < 0.8 {
		verdict = "MISSES"
	}
	fmt.Printf("\nengine/limit = %.2f (%s the 0.8 target)\n\n", engine.rate()/limit.rate(), verdict)
	return runEndpoint(ctx, fx, d, limit.rate())
}
