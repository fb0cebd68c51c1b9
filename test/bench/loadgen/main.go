// Command loadgen drives an IstioCertificateService (Istio's
// security/v1alpha1 ca.proto) from its own process, so that the server it
// measures is not sharing a Go runtime with its callers. `make bench` runs
// it against meshca and istiod's own CA in turn (test/bench/peer.go).
//
// It opens --conns TLS connections, each authenticated with its own client
// certificate (client-N.crt and client-N.key in --creds), and runs
// --concurrency callers spread evenly over them, each sending
// CreateCertificate with one of the pre-made P-256 CSRs of its connection's
// identity (csr-N.pem, one or more PEM blocks) in turn, so that the load
// generator spends no CPU on key generation while it measures. After
// --warmup it measures for --duration and prints one JSON object: the
// certificates issued, errors, and latency percentiles of the measured
// window.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	pb "istio.io/api/security/v1alpha1"
)

// Result is what loadgen prints.
type Result struct {
	// OK and Errors count the measured window; TotalOK includes the
	// warm-up, for server CPU per certificate over the whole run.
	OK, Errors, TotalOK int64
	FirstError          string  `json:",omitempty"`
	Seconds             float64 // measured window
	P50MS, P99MS        float64
	P999MS              float64
}

func main() {
	addr := flag.String("addr", "", "server address (host:port)")
	serverName := flag.String("server-name", "", "TLS server name to verify")
	rootFile := flag.String("root", "", "PEM roots that verify the server")
	creds := flag.String("creds", "", "folder with client-N.crt, client-N.key and csr-N.pem for N = 0..conns-1")
	conns := flag.Int("conns", 4, "TLS connections (one client identity each)")
	concurrency := flag.Int("concurrency", 16, "callers in flight")
	duration := flag.Duration("duration", 5*time.Second, "measured window")
	warmup := flag.Duration("warmup", time.Second, "load before the measured window")
	ttl := flag.Int64("ttl", 86400, "validity_duration in seconds")
	flag.Parse()
	res, err := run(*addr, *serverName, *rootFile, *creds, *conns, *concurrency, *duration, *warmup, *ttl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func run(addr, serverName, rootFile, creds string, conns, concurrency int, duration, warmup time.Duration, ttl int64) (Result, error) {
	if addr == "" || rootFile == "" || creds == "" || conns < 1 || concurrency < 1 {
		return Result{}, errors.New("--addr, --root and --creds are required, --conns and --concurrency at least 1")
	}
	rootPEM, err := os.ReadFile(rootFile)
	if err != nil {
		return Result{}, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return Result{}, fmt.Errorf("no certificate in %s", rootFile)
	}
	clients := make([]pb.IstioCertificateServiceClient, conns)
	csrs := make([][]string, conns)
	for i := range conns {
		cert, err := tls.LoadX509KeyPair(filepath.Join(creds, fmt.Sprintf("client-%d.crt", i)), filepath.Join(creds, fmt.Sprintf("client-%d.key", i)))
		if err != nil {
			return Result{}, err
		}
		if csrs[i], err = readCSRs(filepath.Join(creds, fmt.Sprintf("csr-%d.pem", i))); err != nil {
			return Result{}, err
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: roots, ServerName: serverName, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		})))
		if err != nil {
			return Result{}, err
		}
		defer cc.Close()
		cc.Connect()
		clients[i] = pb.NewIstioCertificateServiceClient(cc)
	}

	var (
		measuring   atomic.Bool
		ok, total   atomic.Int64
		errs        atomic.Int64
		firstErr    atomic.Value
		mu          sync.Mutex
		lat         []time.Duration
		wg          sync.WaitGroup
		ctx, cancel = context.WithCancel(context.Background())
	)
	defer cancel()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := w % conns
			local := make([]time.Duration, 0, 4096)
			for i := w / conns; ctx.Err() == nil; i++ {
				t0 := time.Now()
				resp, err := clients[c].CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: csrs[c][i%len(csrs[c])], ValidityDuration: ttl})
				if ctx.Err() != nil {
					break // the run ended while this call was in flight
				}
				if err == nil {
					err = checkChain(resp.GetCertChain())
				}
				m := measuring.Load()
				if err != nil {
					if m {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				total.Add(1)
				if m {
					ok.Add(1)
					local = append(local, time.Since(t0))
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	time.Sleep(warmup)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	slices.Sort(lat)
	r := Result{OK: ok.Load(), Errors: errs.Load(), TotalOK: total.Load(), Seconds: elapsed.Seconds(),
		P50MS: pct(lat, .5), P99MS: pct(lat, .99), P999MS: pct(lat, .999)}
	if s, _ := firstErr.Load().(string); s != "" {
		r.FirstError = s
	}
	return r, nil
}

// checkChain counts an answer as a certificate only when it is one: at
// least a leaf and a root, the leaf a PEM certificate (parsing it would
// cost the load generator the CPU it measures the servers with).
func checkChain(chain []string) error {
	if len(chain) < 2 {
		return fmt.Errorf("the answer holds %d certificates, want a leaf and a root at least", len(chain))
	}
	if !strings.HasPrefix(chain[0], "-----BEGIN CERTIFICATE-----") {
		return errors.New("the answer's first element is not a PEM certificate")
	}
	return nil
}

func pct(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000
}

// readCSRs returns every CSR PEM block of path, each re-encoded on its own.
func readCSRs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		out = append(out, string(pem.EncodeToMemory(blk)))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CSR in %s", path)
	}
	return out, nil
}
