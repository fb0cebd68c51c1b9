package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/istio"
	"github.com/meshca/meshca/issuer/ratelimit"
	"github.com/meshca/meshca/issuer/server"
	"github.com/meshca/meshca/issuer/tlsconfig"
)

// endpoint is the real Istio gRPC service on loopback TLS, authenticating
// callers by meshca-issued client certificates (the warm path: no apiserver).
type endpoint struct {
	addr  string
	stop  func()
	certs []tls.Certificate
	roots *x509.CertPool
}

func (fx *fixture) startEndpoint(clients int) (*endpoint, error) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	serving := &tlsconfig.ServingCert{Authority: fx.rt.Authority, DNSNames: []string{"meshca.istio-system.svc"}, TTL: time.Hour}
	renewCtx, stopRenewal := context.WithCancel(context.Background())
	if err := serving.Start(renewCtx); err != nil {
		stopRenewal()
		return nil, err
	}
	tlsCfg, err := tlsconfig.Server(tlsconfig.Default, serving.GetCertificate)
	if err != nil {
		stopRenewal()
		return nil, err
	}
	svc := istio.New(istio.Options{
		Signer:        fx.rt.Authority,
		Authenticator: authn.Chain{&authn.ClientCert{Trust: fx.rt.Authority, Records: fx.rt.Store, TrustDomain: "cluster.local"}},
		// Limits far above what the run can reach: the bench measures capacity.
		Limiter: ratelimit.New(ratelimit.Options{PerIdentityQPS: 1e9, PerIdentityBurst: 1e9, MaxConcurrent: 4096, QueueTimeout: 10 * time.Second}),
		Audit:   audit.New(log),
	})
	// The server meshca serve runs, with its default limits and recovery,
	// so that what is measured is what is deployed.
	srv, err := server.New(server.Options{
		GRPCListen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", ShutdownTimeout: time.Second, Log: log,
		Creds: credentials.NewTLS(tlsCfg),
	})
	if err != nil {
		stopRenewal()
		return nil, err
	}
	svc.Register(srv.GRPC)
	runCtx, stopServer := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { _ = srv.Run(runCtx); close(ran) }()
	ep := &endpoint{addr: srv.GRPCAddr().String(), roots: fx.roots, stop: func() {
		stopServer()
		<-ran
		stopRenewal()
	}}
	ok := false
	defer func() {
		if !ok {
			ep.stop()
		}
	}()
	for i := 0; i < clients; i++ {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		id := fx.ids[i%poolSize]
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
		if err != nil {
			return nil, err
		}
		res, err := fx.rt.Authority.Sign(context.Background(), authority.Request{
			CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), Identity: id, Requester: "bench",
		})
		if err != nil {
			return nil, err
		}
		c := tls.Certificate{PrivateKey: key}
		for _, el := range res.Chain[:len(res.Chain)-1] {
			b, _ := pem.Decode([]byte(el))
			c.Certificate = append(c.Certificate, b.Bytes)
		}
		ep.certs = append(ep.certs, c)
	}
	ok = true
	return ep, nil
}

type loadResult struct {
	concurrency int
	ops, errs   int64
	elapsed     time.Duration
	lat         []time.Duration
}

func (r loadResult) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func (r loadResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat)-1) * p)
	return r.lat[i]
}

// drive opens one connection per client and runs concurrency callers over
// them for d; interval > 0 paces each caller (open-loop rate).
func (ep *endpoint) drive(ctx context.Context, fx *fixture, concurrency int, d, interval time.Duration) (loadResult, error) {
	conns := make([]pb.IstioCertificateServiceClient, len(ep.certs))
	for i, c := range ep.certs {
		cc, err := grpc.NewClient(ep.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: ep.roots, ServerName: "meshca.istio-system.svc", Certificates: []tls.Certificate{c},
		})))
		if err != nil {
			return loadResult{}, err
		}
		defer cc.Close()
		conns[i] = pb.NewIstioCertificateServiceClient(cc)
	}
	meta, _ := structpb.NewStruct(map[string]any{"CertSigner": ""})
	var (
		ops, errs atomic.Int64
		mu        sync.Mutex
		lat       []time.Duration
		wg        sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := w % len(conns)
			local := make([]time.Duration, 0, 1024)
			// Stagger paced callers evenly over one interval, so that the
			// arrivals are spread out instead of landing in bursts.
			next := start.Add(time.Duration(int64(interval) * int64(w) / int64(concurrency)))
			for i := 0; time.Now().Before(deadline); i++ {
				if interval > 0 {
					if s := time.Until(next); s > 0 {
						time.Sleep(s)
					}
					next = next.Add(interval)
				}
				t0 := time.Now()
				_, err := conns[client].CreateCertificate(ctx, &pb.IstioCertificateRequest{
					Csr: string(fx.csrs[client%poolSize]), ValidityDuration: 3600, Metadata: meta,
				})
				if err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
				ops.Add(1)
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return loadResult{concurrency: concurrency, ops: ops.Load(), errs: errs.Load(), elapsed: time.Since(start), lat: lat}, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

// runEndpoint is the Istio endpoint scenario: throughput and latency at
// several concurrency levels over real gRPC/TLS connections, then latency
// at half the saturated rate, all compared with the crypto limit.
func runEndpoint(ctx context.Context, fx *fixture, d time.Duration, limit float64) error {
	const clients = 16
	ep, err := fx.startEndpoint(clients)
	if err != nil {
		return err
	}
	defer ep.stop()
	fmt.Printf("Istio endpoint: CreateCertificate over %d TLS connections (client certificates, warm path)\n", clients)
	var results []loadResult
	best := loadResult{}
	rssAtMax := 0.0
	for _, c := range []int{1, 8, 32, 128} {
		r, err := ep.drive(ctx, fx, c, d, 0)
		if err != nil {
			return err
		}
		fmt.Printf("  concurrency %3d: %.0f ops/s, p99 %s, errors %d\n", c, r.rate(), ms(r.pct(0.99)), r.errs)
		results = append(results, r)
		if best.ops == 0 || r.rate() > best.rate() {
			best, rssAtMax = r, procRSS(os.Getpid())
		}
	}
	// Half the saturated rate, paced open-loop over 32 callers.
	half := best.rate() / 2
	const callers = 32
	interval := time.Duration(float64(time.Second) * callers / half)
	paced, err := ep.drive(ctx, fx, callers, d, interval)
	if err != nil {
		return err
	}
	fmt.Printf("\nCONCURRENCY  OPS/S   P50      P99      P999     ERRORS  RATIO TO LIMIT\n")
	for _, r := range results {
		fmt.Printf("%-11d  %-6.0f  %-7s  %-7s  %-7s  %-6d  %.2f\n", r.concurrency, r.rate(), ms(r.pct(.5)), ms(r.pct(.99)), ms(r.pct(.999)), r.errs, r.rate()/limit)
	}
	fmt.Printf("paced@50%%    %-6.0f  %-7s  %-7s  %-7s  %-6d  %.2f\n", paced.rate(), ms(paced.pct(.5)), ms(paced.pct(.99)), ms(paced.pct(.999)), paced.errs, paced.rate()/limit)
	verdict := func(ok bool) string {
		if ok {
			return "meets"
		}
		return "MISSES"
	}
	fmt.Printf("\nsaturation/limit = %.2f (%s the 0.6 target); p99 at 50%% of max = %s (%s the 5ms target); errors below the limit = %d; RSS at max rate = %.0f MiB\n",
		best.rate()/limit, verdict(best.rate()/limit >= 0.6), ms(paced.pct(.99)), verdict(paced.pct(.99) <= 5*time.Millisecond),
		paced.errs+best.errs, rssAtMax)
	fmt.Println("note: the load generator runs in the same process and on the same 2 cores as the server, so its own TLS and gRPC work is included in the cost.")
	return nil
}
