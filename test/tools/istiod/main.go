// Command istiod-ca is istiod's own certificate authority, built from
// istio.io/istio at the version pinned in go.mod, as the peer that
// `make bench` measures meshca against (see test/tools/testbin.sh and
// test/bench/peer.go).
//
// It runs exactly the code istiod runs for Istio's CA port
// (IstioCertificateService, security/v1alpha1 ca.proto): the CA server of
// security/pkg/server/ca, signing with security/pkg/pki/ca on a plug-in CA
// folder (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem, as
// documented in Istio's "Plug in CA Certificates" task), and istiod's
// client-certificate authenticator. Its serving certificate is issued by
// that CA for istiod.istio-system.svc, as istiod issues its own. Nothing
// else of istiod (xDS, Kubernetes) runs, so what is measured is the CA.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"istio.io/istio/pkg/security"
	pkica "istio.io/istio/security/pkg/pki/ca"
	caserver "istio.io/istio/security/pkg/server/ca"
	"istio.io/istio/security/pkg/server/ca/authenticate"
)

// ServingName is the DNS name of the serving certificate (istiod's own).
const ServingName = "istiod.istio-system.svc"

func main() {
	dir := flag.String("cacerts", "", "plug-in CA folder (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem), as 'meshca cacerts' writes it")
	listen := flag.String("listen", "127.0.0.1:15012", "gRPC address of the CA")
	ttl := flag.Duration("workload-cert-ttl", 24*time.Hour, "default workload certificate TTL (istiod's DEFAULT_WORKLOAD_CERT_TTL)")
	maxTTL := flag.Duration("max-workload-cert-ttl", 90*24*time.Hour, "longest workload certificate TTL (istiod's MAX_WORKLOAD_CERT_TTL)")
	version := flag.Bool("version", false, "print the istio.io/istio version and exit")
	flag.Parse()
	if *version {
		fmt.Println("istiod-ca", istioVersion())
		return
	}
	if err := run(*dir, *listen, *ttl, *maxTTL); err != nil {
		fmt.Fprintln(os.Stderr, "istiod-ca:", err)
		os.Exit(1)
	}
}

// istioVersion is the version of istio.io/istio this binary was built from.
func istioVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "istio.io/istio" {
				return "istio.io/istio " + d.Version
			}
		}
	}
	return "istio.io/istio (unknown version)"
}

func run(dir, listen string, ttl, maxTTL time.Duration) error {
	if dir == "" {
		return fmt.Errorf("--cacerts is required")
	}
	opts, err := pkica.NewPluggedCertIstioCAOptions(pkica.SigningCAFileBundle{
		RootCertFile:    filepath.Join(dir, "root-cert.pem"),
		CertChainFiles:  []string{filepath.Join(dir, "cert-chain.pem")},
		SigningCertFile: filepath.Join(dir, "ca-cert.pem"),
		SigningKeyFile:  filepath.Join(dir, "ca-key.pem"),
	}, ttl, maxTTL, 2048)
	if err != nil {
		return err
	}
	ca, err := pkica.NewIstioCA(opts)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.GenKeyCert([]string{ServingName}, 24*time.Hour, false)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	serving, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca.GetCAKeyCertBundle().GetRootCertPem()) {
		return fmt.Errorf("no root certificate in %s", dir)
	}
	// istiod's secure gRPC server asks for a client certificate and
	// verifies it when given (tokens are the other credential).
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{serving},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    roots,
		MinVersion:   tls.VersionTLS12,
	}
	srv, err := caserver.New(ca, ttl, []security.Authenticator{&authenticate.ClientCertAuthenticator{}}, nil)
	if err != nil {
		return err
	}
	// istiod's defaults (pilot/pkg/features): 100000 streams per
	// connection, 4 MiB messages. A panic in a handler answers Internal
	// instead of ending the process (and the benchmark run).
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)), grpc.MaxConcurrentStreams(100000), grpc.MaxRecvMsgSize(4<<20),
		grpc.ChainUnaryInterceptor(recoverUnary), grpc.ChainStreamInterceptor(recoverStream))
	srv.Register(g)
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("istiod-ca: serving on %s\n", lis.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-stop; g.Stop() }()
	return g.Serve(lis)
}

// recoverUnary turns a handler's panic into an Internal error.
func recoverUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "istiod-ca: handler panic: %v\n", r)
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(ctx, req)
}

// recoverStream turns a stream handler's panic into an Internal error.
func recoverStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "istiod-ca: stream handler panic: %v\n", r)
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(srv, ss)
}
