package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/test/kubeenv"
)

// The fault suite's load: a modest, steady rate of CreateCertificate calls
// on the Istio endpoint, each with a fresh P-256 CSR, authenticated by a
// client certificate from 'meshca sign' (so that no call depends on the
// apiserver's TokenReview). With several replicas the calls are spread
// round robin over them, as a Kubernetes Service spreads connections; gRPC's
// round_robin balancer stops picking a replica whose connection failed.
const (
	faultLoadWorkers = 4
	faultLoadRate    = 20 // calls per second, all workers together
	faultCallTimeout = 10 * time.Second
	// faultRecoveryBound is the recovery the suite asserts: from the
	// moment a fault clears to the first successful call after the last
	// failed one.
	faultRecoveryBound = 15 * time.Second
)

// faultCall is one CreateCertificate call of the load.
type faultCall struct {
	sent, done time.Time
	code       codes.Code
	msg        string
	serial     string // hex, as 'meshca records list' prints it; OK calls only
}

type faultLoad struct {
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	calls  []faultCall
}

// startFaultLoad starts the load against addrs with the client
// certificate chain and key, verifying the servers with rootPEM.
func startFaultLoad(t *testing.T, addrs []string, rootPEM, certPEM, keyPEM []byte, id string) *faultLoad {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	r := manual.NewBuilderWithScheme("faults")
	var as []resolver.Address
	for _, a := range addrs {
		as = append(as, resolver.Address{Addr: a})
	}
	r.InitialState(resolver.State{Addresses: as})
	conn, err := grpc.NewClient(r.Scheme()+":///meshca", grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		// Reconnect within a second of a replica being back, so that the
		// recovery measured is meshca's, not gRPC's default back-off (up
		// to 120 s).
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}, MinConnectTimeout: time.Second}),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}})))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	l := &faultLoad{conn: conn, cancel: cancel}
	t.Cleanup(l.stop)
	tick := time.NewTicker(time.Second / faultLoadRate)
	tokens := make(chan struct{})
	l.wg.Go(func() {
		defer tick.Stop()
		defer close(tokens)
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				case <-ctx.Done():
					return
				default: // every worker busy: the call is not made, and not counted
				}
			}
		}
	})
	meta, _ := structpb.NewStruct(map[string]any{"CertSigner": ""})
	client := pb.NewIstioCertificateServiceClient(conn)
	for range faultLoadWorkers {
		l.wg.Go(func() {
			for range tokens {
				csr := workloadCSR(t, id)
				c := faultCall{sent: time.Now()}
				cctx, ccancel := context.WithTimeout(context.Background(), faultCallTimeout)
				resp, err := client.CreateCertificate(cctx, &pb.IstioCertificateRequest{Csr: csr, ValidityDuration: 3600, Metadata: meta})
				ccancel()
				c.done = time.Now()
				c.code = status.Code(err)
				if err != nil {
					c.msg = err.Error()
				} else if c.serial, err = leafSerial(resp.GetCertChain()); err != nil {
					c.code, c.msg = codes.Internal, "test: "+err.Error()
				}
				l.mu.Lock()
				l.calls = append(l.calls, c)
				l.mu.Unlock()
			}
		})
	}
	return l
}

func leafSerial(chain []string) (string, error) {
	if len(chain) < 2 {
		return "", fmt.Errorf("a chain of %d certificates", len(chain))
	}
	certs, err := root.ParseCertificates([]byte(chain[0]))
	if err != nil || len(certs) != 1 {
		return "", fmt.Errorf("the leaf does not parse: %v", err)
	}
	return hex.EncodeToString(certs[0].SerialNumber.Bytes()), nil
}

// stop ends the load and waits for the calls in flight.
func (l *faultLoad) stop() {
	l.cancel()
	l.wg.Wait()
	l.conn.Close()
}

func (l *faultLoad) snapshot() []faultCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// okSince counts the successful calls sent after t.
func (l *faultLoad) okSince(t time.Time) int {
	n := 0
	for _, c := range l.snapshot() {
		if c.code == codes.OK && c.sent.After(t) {
			n++
		}
	}
	return n
}

// waitRecovered waits (up to faultRecoveryBound and a margin) until 20
// calls sent after the last failed one, and after cleared, have
// succeeded; if they do not, it fails with the last errors and logs.
func (l *faultLoad) waitRecovered(t *testing.T, cleared time.Time, logs func() string) {
	t.Helper()
	if n, errs, ok := l.awaitRecovery(cleared); !ok {
		t.Fatalf("no recovery: %d successful calls since the fault cleared at %s; last errors:\n%s\n%s",
			n, cleared.Format("15:04:05.000"), strings.Join(errs, "\n"), logs())
	}
}

// awaitRecovery is waitRecovered without failing the test: ok reports
// the recovery; otherwise n is the successful calls after the last failed
// one and errs the last errors.
func (l *faultLoad) awaitRecovery(cleared time.Time) (n int, errs []string, ok bool) {
	deadline := time.Now().Add(faultRecoveryBound + 10*time.Second)
	for {
		calls := l.snapshot()
		last := cleared
		errs = errs[:0]
		for _, c := range calls {
			if c.code != codes.OK && c.done.After(last) {
				last = c.done
			}
			if c.code != codes.OK {
				errs = append(errs, c.done.Format("15:04:05.000")+" "+c.msg)
			}
		}
		n = 0
		for _, c := range calls {
			if c.code == codes.OK && c.sent.After(last) {
				n++
			}
		}
		if n >= 20 {
			return n, nil, true
		}
		if time.Now().After(deadline) {
			return n, errs[max(0, len(errs)-5):], false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// faultResult is one row of the suite's table.
type faultResult struct {
	Fault                      string
	Sent, OK, Retryable, Other int
	Recovery                   time.Duration
	// NoRecovery: no call sent after the last failed one succeeded.
	NoRecovery bool
	// Gap is the longest time between two successful calls' completions:
	// how long the endpoint was out, at worst, as a caller saw it.
	Gap             time.Duration
	Alerts          string
	OtherErrors     []string
	RetryableErrors []string // the first distinct ones
	Serials         []string
	// Exits lists why meshca serve exited during the run (kubeletServe).
	Exits []string
	// Revocations is "acknowledged/attempted" (revoker); Revoked counts
	// the acknowledged ones, and LostRevocations those without a record.
	Revocations     string
	Revoked         int
	LostRevocations []string
}

// result summarizes the calls: retryable are the codes a client retries
// (Unavailable, ResourceExhausted); every other non-OK code is listed. The
// recovery is from cleared to the completion of the first successful call
// sent after both cleared and the completion of the last failed call.
func (l *faultLoad) result(fault string, cleared time.Time) faultResult {
	r := faultResult{Fault: fault}
	last := cleared
	for _, c := range l.snapshot() {
		r.Sent++
		switch c.code {
		case codes.OK:
			r.OK++
			r.Serials = append(r.Serials, c.serial)
		case codes.Unavailable, codes.ResourceExhausted:
			r.Retryable++
			if !slices.Contains(r.RetryableErrors, c.msg) && len(r.RetryableErrors) < 5 {
				r.RetryableErrors = append(r.RetryableErrors, c.msg)
			}
		default:
			r.Other++
			r.OtherErrors = append(r.OtherErrors, fmt.Sprintf("sent %s: %s", c.sent.Format("15:04:05.000"), c.msg))
		}
		if c.code != codes.OK && c.done.After(last) {
			last = c.done
		}
	}
	first := time.Time{}
	for _, c := range l.snapshot() {
		if c.code == codes.OK && c.sent.After(last) && (first.IsZero() || c.done.Before(first)) {
			first = c.done
		}
	}
	r.Recovery = first.Sub(cleared)
	if first.IsZero() {
		r.NoRecovery, r.Recovery = true, 0
	}
	var prev time.Time
	calls := l.snapshot()
	slices.SortFunc(calls, func(a, b faultCall) int { return a.done.Compare(b.done) })
	for _, c := range calls {
		if c.code != codes.OK {
			continue
		}
		if !prev.IsZero() && c.done.Sub(prev) > r.Gap {
			r.Gap = c.done.Sub(prev)
		}
		prev = c.done
	}
	return r
}

// requireFaultResult asserts the suite's rules on r and records its row.
func requireFaultResult(t *testing.T, r faultResult, logs func() string) {
	t.Helper()
	faultTable.add(r)
	t.Logf("%s: %d sent, %d ok, %d retryable, %d other, recovered in %.2fs, longest outage %.2fs", r.Fault, r.Sent, r.OK, r.Retryable, r.Other, r.Recovery.Seconds(), r.Gap.Seconds())
	t.Logf("retryable errors seen (first distinct): %q", r.RetryableErrors)
	require.Empty(t, r.Exits, "meshca serve exited during the fault (kubeletServe restarted it):\n%s", logs())
	require.Empty(t, r.OtherErrors, "calls failed with a code a client does not retry:\n%s", logs())
	require.False(t, r.NoRecovery, "no call succeeded after the last failed one:\n%s", logs())
	require.LessOrEqual(t, r.Recovery, faultRecoveryBound, "the service did not recover within %s of the fault clearing:\n%s", faultRecoveryBound, logs())
	require.GreaterOrEqual(t, r.OK, 60, "too little load to judge:\n%s", logs())
	require.Empty(t, r.LostRevocations, "acknowledged revocations without a record (of %d)", r.Revoked)
	require.Positive(t, r.Revoked, "no revocation was acknowledged")
}

// requireRefusalsCounted asserts what the PrometheusRule's issuance
// alerts read (deploy/prometheus/meshca-rules.yaml): s, the only replica,
// counted every Unavailable call of the load in
// meshca_istio_requests_total{code="Unavailable"} (MeshCAIstioEndpointErrors),
// and counted refusals to record an issuance in
// meshca_issuance_denied_total{reason="store_unavailable"}
// (MeshCAIssuanceErrors); it returns that count. Their "for" (5 and 10
// minutes) outlasts these faults, so neither fires here.
func requireRefusalsCounted(t *testing.T, s *server, l *faultLoad) float64 {
	t.Helper()
	unavailable := 0
	for _, c := range l.snapshot() {
		if c.code == codes.Unavailable {
			unavailable++
		}
	}
	require.Positive(t, unavailable, "the fault did not bite")
	counted, _ := s.metricSum(t, "meshca_istio_requests_total", `code="Unavailable"`)
	require.Equal(t, float64(unavailable), counted, "meshca_istio_requests_total{code=\"Unavailable\"} against the load's Unavailable calls")
	denied, _ := s.metricSum(t, "meshca_issuance_denied_total", `reason="store_unavailable"`)
	require.Positive(t, denied, "meshca_issuance_denied_total{reason=\"store_unavailable\"}")
	t.Logf("%d calls Unavailable, %v of them refused to record the issuance (store_unavailable)", unavailable, denied)
	return denied
}

// requireNoInternals asserts that no error a caller got names the store's
// internals (a file path, a database or user name, an address): those are
// for meshca's log, not for every workload that can call the endpoint.
func requireNoInternals(t *testing.T, r faultResult, internals ...string) {
	t.Helper()
	for _, m := range append(slices.Clone(r.RetryableErrors), r.OtherErrors...) {
		for _, s := range internals {
			require.NotContains(t, m, s, "an error returned to a caller names the store's internals")
		}
	}
}

// requireRecorded asserts that every serial the load got back is an
// issuance record in the store of the --dir or --config configuration
// (args), read by 'meshca records list'.
func requireRecorded(t *testing.T, serials []string, args ...string) {
	t.Helper()
	out := meshca(t, append([]string{"records", "list", "-o", "json"}, args...)...)
	have := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec struct{ Serial string }
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		have[rec.Serial] = true
	}
	var lost []string
	for _, s := range serials {
		if !have[s] {
			lost = append(lost, s)
		}
	}
	require.Empty(t, lost, "acknowledged issuances without a record (%d of %d)", len(lost), len(serials))
}

// webhookAlerts receives meshca's alert webhook (Alertmanager's JSON,
// version 4) and keeps every notification in order.
type webhookAlerts struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string // "firing RootSourceUnreachable", "resolved ..."
}

func startWebhook(t *testing.T) *webhookAlerts {
	w := &webhookAlerts{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p struct {
			Status string `json:"status"`
			Alerts []struct {
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		if json.Unmarshal(b, &p) == nil {
			w.mu.Lock()
			for _, a := range p.Alerts {
				w.seen = append(w.seen, p.Status+" "+a.Labels["alertname"])
			}
			w.mu.Unlock()
		}
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// yaml is the alerts section that sends to w, evaluating the rules every
// 10 s (the shortest interval meshca allows).
func (w *webhookAlerts) yaml(t *testing.T, extraRules string) string {
	f := filepath.Join(t.TempDir(), "webhook-url")
	require.NoError(t, os.WriteFile(f, []byte(w.srv.URL+"\n"), 0o600))
	return "alerts:\n  webhook:\n    urlFile: " + f + "\n  rules:\n    interval: 10s\n" + extraRules
}

func (w *webhookAlerts) has(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.seen, s)
}

func (w *webhookAlerts) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.seen) == 0 {
		return "none"
	}
	return strings.Join(w.seen, ", ")
}

// faultTable collects the rows of the suite and writes them out.
var faultTable = &faultRows{}

type faultRows struct {
	mu   sync.Mutex
	rows []faultResult
}

func (f *faultRows) add(r faultResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rows = append(f.rows, r)
}

// markdown renders the table as the README quotes it.
func (f *faultRows) markdown() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	b.WriteString("| fault | requests sent | ok | retryable errors | other errors | recovery seconds | longest outage seconds | revocations acknowledged/attempted | alerts delivered | meshca exits |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range f.rows {
		exits := "none"
		if len(r.Exits) > 0 {
			exits = fmt.Sprintf("%d: %s", len(r.Exits), strings.Join(r.Exits, "; "))
		}
		recovery := fmt.Sprintf("%.2f", r.Recovery.Seconds())
		if r.NoRecovery {
			recovery = "not recovered"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %.2f | %s | %s | %s |\n", r.Fault, r.Sent, r.OK, r.Retryable, r.Other, recovery, r.Gap.Seconds(), r.Revocations, r.Alerts, exits)
	}
	return b.String()
}

// writeFaultTable logs the table and writes it to .meshca/fault-suite.md
// of the repository (git-ignored), or to $MESHCA_FAULT_TABLE.
func writeFaultTable(t *testing.T) {
	md := faultTable.markdown()
	t.Log("fault suite:\n" + md)
	path := os.Getenv("MESHCA_FAULT_TABLE")
	if path == "" {
		root, err := kubeenv.RepoRoot()
		require.NoError(t, err)
		path = filepath.Join(root, ".meshca", "fault-suite.md")
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(md), 0o644))
}
