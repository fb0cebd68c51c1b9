package durability

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshca/meshca/test/syncorder"
)

const workloadID = "spiffe://cluster.local/ns/default/sa/app"

// initCA creates a CA with the real binary and returns its directory and
// the store path as strace -yy prints it (symlinks resolved).
func initCA(t *testing.T) (dir, storePath string) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	dir = filepath.Join(dir, "ca")
	out, err := exec.Command(meshcaBin, "init", "--dir", dir).CombinedOutput()
	require.NoError(t, err, string(out))
	return dir, filepath.Join(dir, "meshca.db")
}

// writeCSR writes a P-256 CSR for id and returns its path and PEM key.
func writeCSR(t *testing.T, dir, id string) (string, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse(id)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	require.NoError(t, err)
	p := filepath.Join(dir, "workload.csr")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600))
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

// leafSerial returns the serial of the first certificate in a PEM chain
// as the store records it (lower-case hex).
func leafSerial(chainPEM string) (string, error) {
	b, _ := pem.Decode([]byte(chainPEM))
	if b == nil {
		return "", errors.New("no PEM certificate in the reply")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(c.SerialNumber.Bytes()), nil
}

// auditLine selects the audit line "certificate.issued" for serial on stderr.
func auditLine(serial string) func(syncorder.Call) bool {
	return func(c syncorder.Call) bool {
		if !c.IsWrite() || c.FD != 2 {
			return false
		}
		// serve writes the lines of a moment together: one line of
		// the write (strace prints its newlines as \n) must be the
		// audit line of this serial.
		for _, line := range strings.Split(c.Args, `\n`) {
			if strings.Contains(line, `certificate.issued`) && strings.Contains(line, syncorder.RecordMarker(serial)) {
				return true
			}
		}
		return false
	}
}

// tracedServer is meshca serve running under strace.
type tracedServer struct {
	strace    *exec.Cmd
	trace     string
	grpc, ops string
	mu        sync.Mutex
	stderr    bytes.Buffer
	done      chan error
	stopped   bool
}

func startTracedServe(t *testing.T, bin, dir string) *tracedServer {
	t.Helper()
	trace := filepath.Join(t.TempDir(), "serve.strace")
	cmd, err := syncorder.Command(trace, bin, "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0")
	require.NoError(t, err, "strace must be installed (make deps)")
	pr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	s := &tracedServer{strace: cmd, trace: trace, done: make(chan error, 1)}
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Bytes()
			s.mu.Lock()
			s.stderr.Write(line)
			s.stderr.WriteByte('\n')
			s.mu.Unlock()
			var ev struct{ Msg, GRPC, Ops string }
			if json.Unmarshal(line, &ev) == nil && ev.Msg == "serving" {
				addrs <- [2]string{ev.GRPC, ev.Ops}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if !s.stopped {
			_ = cmd.Process.Kill() // strace kills its tracee when it is killed
			<-s.done
		}
	})
	select {
	case a := <-addrs:
		s.grpc, s.ops = a[0], a[1]
	case err := <-s.done:
		s.stopped = true
		t.Fatalf("meshca serve exited early: %v\n%s", err, s.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("meshca serve did not start within 60s under strace:\n%s", s.logs())
	}
	return s
}

func (s *tracedServer) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// stop sends SIGTERM to meshca (strace's child, not strace, which would
// detach) and waits until strace has written the whole trace.
func (s *tracedServer) stop(t *testing.T) *syncorder.Trace {
	t.Helper()
	pid := s.strace.Process.Pid
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	require.NoError(t, err)
	kids := strings.Fields(string(raw))
	require.Len(t, kids, 1, "strace runs exactly one child, meshca")
	child, err := strconv.Atoi(kids[0])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(child, syscall.SIGTERM))
	select {
	case err := <-s.done:
		s.stopped = true
		require.NoError(t, err, s.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("meshca serve did not stop within 60s of SIGTERM:\n%s", s.logs())
	}
	tr, err := syncorder.ParseFile(s.trace)
	require.NoError(t, err)
	return tr
}

// issuance is one CreateCertificate over a connection of its own.
type issuance struct {
	serial string
	// local is the client's end of the TCP connection: the server's
	// socket shows it as the remote end.
	local string
	// ready is when the connection was READY (TLS and HTTP/2 set up),
	// before the request was sent.
	ready time.Time
}

// reply selects the server's first write to this client, after the
// connection was ready, large enough to carry the response (HTTP/2 PING,
// SETTINGS and WINDOW_UPDATE frames are a few dozen bytes in TLS).
func (is issuance) reply(c syncorder.Call) bool {
	return c.IsWrite() && strings.HasSuffix(c.Path, "->"+is.local+"]") && c.Ret >= 256 &&
		c.Time > float64(is.ready.UnixMicro())/1e6
}

// issue dials addr like istio-agent (TLS with the mesh root and a client
// certificate) on a fresh connection and requests a certificate.
func issue(addr string, rootPEM, certPEM, keyPEM, csr []byte) (issuance, error) {
	var is issuance
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return is, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	var dials []string
	var mu sync.Mutex
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}})),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
			if err == nil {
				mu.Lock()
				dials = append(dials, c.LocalAddr().String())
				mu.Unlock()
			}
			return c, err
		}))
	if err != nil {
		return is, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn.Connect()
	for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			return is, fmt.Errorf("connection not ready: %v", st)
		}
	}
	is.ready = time.Now()
	meta, _ := structpb.NewStruct(map[string]any{"CertSigner": ""})
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr: string(csr), ValidityDuration: 3600, Metadata: meta,
	})
	if err != nil {
		return is, err
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dials) != 1 {
		return is, fmt.Errorf("want one TCP connection per issuance, dialed %d", len(dials))
	}
	is.local = dials[0]
	is.serial, err = leafSerial(resp.CertChain[0])
	return is, err
}

// issueConcurrently runs n issuances at once, so that the store
// group-commits them, and returns them.
func issueConcurrently(t *testing.T, n int, addr string, rootPEM, certPEM, keyPEM []byte) []issuance {
	t.Helper()
	csrPath, _ := writeCSR(t, t.TempDir(), workloadID)
	csr, err := os.ReadFile(csrPath)
	require.NoError(t, err)
	out := make([]issuance, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i], errs[i] = issue(addr, rootPEM, certPEM, keyPEM, csr) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	return out
}
