// Command bench measures meshca's issuance throughput against a baseline
// measured in the same run, and prints each result as a ratio, because
// machines are noisy. It is not a timed test: run it with `make bench`.
//
// It measures the crypto limit (check a CSR, sign a classical leaf, verify
// it), the classical engine against that limit, the engine for every
// certificate profile (classical, catalyst, composite, mldsa) against the
// classical engine (the cost of post-quantum issuance per certificate),
// then the Istio endpoint under load, and finally the peer benchmark: meshca
// serve against istiod's own CA server, each in its own process, driven by
// a load generator in a third (peer.go). The CRL table (crl.go) compares
// meshca's streaming CRL builder with x509.CreateRevocationList; run it
// alone with -crl=only. The CSR API scenario (csrapi.go: 1000
// CertificateSigningRequests created at once, meshca serve and a real
// apiserver, the time to the last certificate) runs alone with -csr=only.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshca/meshca/ca/profile"
)

// catalystTarget is the most a catalyst certificate may cost, in classical
// certificates: one ML-DSA signature on top of the classical work, built in
// a single pass (the naive two-pass build costs about 4x).
const catalystTarget = 2.5

// profiles are measured in this order; classical is the baseline.
var profiles = []profile.Name{profile.Classical, profile.Catalyst, profile.Composite, profile.MLDSA}

func main() {
	duration := flag.Duration("duration", 4*time.Second, "measuring time per scenario")
	concurrency := flag.Int("concurrency", 64, "concurrent callers for the engine scenarios")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	peer := flag.String("peer", "on", "the peer benchmark against istiod's CA: on, off, or only (skip the in-process scenarios)")
	var po peerOptions
	flag.DurationVar(&po.duration, "peer-duration", 5*time.Second, "measured window of each peer run (after 1s of warm-up)")
	flag.IntVar(&po.rounds, "peer-rounds", 3, "rounds of the peer benchmark; each runs every server once per concurrency, alternating")
	peerConc := flag.String("peer-concurrency", "16,64", "comma-separated concurrencies of the peer benchmark")
	flag.StringVar(&po.storeDir, "peer-store-dir", "", "folder for meshca's stores in the peer benchmark (default: a temporary folder; /dev/shm gives the tmpfs upper bound)")
	flag.StringVar(&po.istiodPath, "istiod", "", "istiod-ca binary (default bin/istiod/istiod-ca, built by 'bash test/tools/testbin.sh istiod')")
	flag.StringVar(&po.perfDir, "peer-perf", "", "record each server with perf(1) during each peer run into this folder (perf report -i FILE)")
	flag.BoolVar(&po.syscalls, "peer-syscalls", false, "count each server's system calls and context switches per certificate with perf stat (printed under the peer table)")
	flag.Func("peer-meshca-env", "KEY=VALUE added to the meshca servers' environment (repeatable; for experiments such as GOGC=200)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("%q is not KEY=VALUE", v)
		}
		po.meshcaEnv = append(po.meshcaEnv, v)
		return nil
	})
	flag.BoolVar(&po.keepWorkDir, "peer-keep", false, "keep the peer benchmark's work folder (server logs, stores) and print its path")
	crlMode := flag.String("crl", "on", "the CRL builder table (crl.Build vs x509.CreateRevocationList): on, off, or only (skip every other scenario)")
	crlRounds := flag.Int("crl-rounds", 3, "rounds of the CRL table; the median is printed")
	crlLatency := flag.String("crl-latency", "on", "revoke-ack -> new CRL over HTTP and -> istio-ca-crl ConfigMap (meshca serve and a real apiserver): on, off, or only")
	crlLatencyRounds := flag.Int("crl-latency-rounds", 5, "revocations measured one at a time for the revocation latencies")
	csrAPI := flag.String("csr", "on", "the CSR API scenario: CertificateSigningRequests created at once until the last is signed (meshca serve, real apiserver): on, off, or only")
	csrAPICount := flag.Int("csr-count", 1000, "CertificateSigningRequests of the CSR API scenario")
	crlChildSpec := flag.String("crl-child", "", "internal: build one CRL (meshca:N or stdlib:N) in this process and print the measurement")
	flag.Parse()
	if *crlChildSpec != "" {
		if err := crlChild(*crlChildSpec); err != nil {
			fmt.Fprintln(os.Stderr, "bench: crl child:", err)
			os.Exit(1)
		}
		return
	}
	if *crlMode != "on" && *crlMode != "off" && *crlMode != "only" {
		fmt.Fprintf(os.Stderr, "bench: -crl: %q is not one of on, off, only\n", *crlMode)
		os.Exit(2)
	}
	if *crlRounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -crl-rounds must be at least 1")
		os.Exit(2)
	}
	if *crlLatency != "on" && *crlLatency != "off" && *crlLatency != "only" {
		fmt.Fprintf(os.Stderr, "bench: -crl-latency: %q is not one of on, off, only\n", *crlLatency)
		os.Exit(2)
	}
	if *csrAPI != "on" && *csrAPI != "off" && *csrAPI != "only" {
		fmt.Fprintf(os.Stderr, "bench: -csr: %q is not one of on, off, only\n", *csrAPI)
		os.Exit(2)
	}
	if *csrAPI == "only" {
		if err := runCSRAPI(context.Background(), max(1, *csrAPICount)); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *crlLatency == "only" {
		if err := runCRLLatency(context.Background(), max(1, *crlLatencyRounds)); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *crlMode == "only" {
		if err := runCRL(*crlRounds); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	for _, c := range strings.Split(*peerConc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: -peer-concurrency: %q is not a positive number\n", c)
			os.Exit(2)
		}
		po.conc = append(po.conc, n)
	}
	if *peer != "on" && *peer != "off" && *peer != "only" {
		fmt.Fprintf(os.Stderr, "bench: -peer: %q is not one of on, off, only\n", *peer)
		os.Exit(2)
	}
	if po.rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -peer-rounds must be at least 1")
		os.Exit(2)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	var err error
	if *peer != "only" {
		err = run(context.Background(), *duration, *concurrency)
	}
	// -peer=only, like -crl=only, skips every other scenario.
	if err == nil && *crlMode == "on" && *peer != "only" {
		err = runCRL(*crlRounds)
	}
	if err == nil && *crlLatency == "on" && *peer != "only" {
		err = runCRLLatency(context.Background(), max(1, *crlLatencyRounds))
	}
	if err == nil && *csrAPI == "on" && *peer != "only" {
		err = runCSRAPI(context.Background(), max(1, *csrAPICount))
	}
	if err == nil && *peer != "off" {
		fmt.Println("\npeer benchmark: meshca serve vs istiod's CA (separate processes)")
		err = runPeer(context.Background(), po)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, d time.Duration, concurrency int) error {
	cores := runtime.GOMAXPROCS(0)
	fmt.Printf("meshca bench: %d cores, %s per scenario\n", cores, d)
	fixtures := map[profile.Name]*fixture{}
	for _, p := range profiles {
		fx, err := newFixture(ctx, p)
		if err != nil {
			return fmt.Errorf("%s fixture: %w", p, err)
		}
		defer fx.close()
		fixtures[p] = fx
	}
	fx := fixtures[profile.Classical]

	steps := 2 + len(profiles)
	fmt.Printf("[1/%d] crypto limit: parse+check CSR, sign, verify (in process, one worker per core)\n", steps)
	limit, err := measure(ctx, d, cores, fx.cryptoOnce)
	if err != nil {
		return err
	}
	engine := map[profile.Name]result{}
	for i, p := range profiles {
		fmt.Printf("[%d/%d] engine, %s profile: CSR -> policy -> sign -> durable bbolt record -> PEM chain (%d callers)\n", i+2, steps, p, concurrency)
		if engine[p], err = measure(ctx, d, concurrency, fixtures[p].engineOnce); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}

	classical := engine[profile.Classical]
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nSCENARIO\tOPS\tOPS/S\tOPS/S/CORE\tRATIO TO LIMIT")
	fmt.Fprintf(w, "crypto limit\t%d\t%.0f\t%.0f\t1.00\n", limit.ops, limit.rate(), limit.rate()/float64(cores))
	fmt.Fprintf(w, "engine (classical)\t%d\t%.0f\t%.0f\t%.2f\n", classical.ops, classical.rate(), classical.rate()/float64(cores), classical.rate()/limit.rate())
	w.Flush()
	verdict := "meets"
	if classical.rate()/limit.rate() < 0.8 {
		verdict = "MISSES"
	}
	fmt.Printf("\nengine/limit = %.2f (%s the 0.8 target)\n", classical.rate()/limit.rate(), verdict)
	printProfiles(engine, cores)

	fmt.Printf("[%d/%d] ", steps, steps)
	return runEndpoint(ctx, fx, d, limit.rate())
}

// printProfiles prints issuance per profile as a ratio to classical, and
// the catalyst verdict.
func printProfiles(engine map[profile.Name]result, cores int) {
	classical := engine[profile.Classical]
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nPROFILE\tOPS\tOPS/S\tOPS/S/CORE\tOPS/S RATIO TO CLASSICAL\tCOST PER CERT (x CLASSICAL)")
	for _, p := range profiles {
		r := engine[p]
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%.0f\t%.2f\t%.2f\n", p, r.ops, r.rate(), r.rate()/float64(cores), r.rate()/classical.rate(), classical.rate()/r.rate())
	}
	w.Flush()
	cost := classical.rate() / engine[profile.Catalyst].rate()
	verdict := "meets"
	if cost > catalystTarget {
		verdict = "MISSES"
	}
	fmt.Printf("\ncatalyst costs %.2fx a classical certificate (%s the <= %.1fx target)\n\n", cost, verdict, catalystTarget)
}
