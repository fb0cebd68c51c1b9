package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/httpget"
)

// meshca runs the binary to completion and returns stdout.
func meshca(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(meshcaBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "meshca %v: %s", args, stderr.String())
	return stdout.String()
}

func initCA(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	meshca(t, "init", "--dir", dir)
	return dir
}

// writeCSR writes an ECDSA P-256 CSR shaped like istio-agent's and returns its path.
func writeCSR(t *testing.T, dir, id string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse(id)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{""}}, URIs: []*url.URL{u},
	}, key)
	require.NoError(t, err)
	p := filepath.Join(dir, "workload.csr")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600))
	return p
}

// server is a running meshca serve.
type server struct {
	cmd    *exec.Cmd
	ops    string
	grpc   string
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
	// exited is closed when the process has exited.
	exited chan struct{}
}

// startServe starts meshca serve on loopback ephemeral ports and returns
// once it has logged its addresses.
func startServe(t *testing.T, dir string, extra ...string) *server {
	t.Helper()
	s, err := launchServe(t, dir, extra...)
	require.NoError(t, err)
	return s
}

// launchServe is startServe for any goroutine: it reports a failed start
// as an error instead of failing the test.
func launchServe(t *testing.T, dir string, extra ...string) (*server, error) {
	return launch(t, "serving", dir, extra...)
}

// startServeOps starts meshca serve like startServe but returns as soon as
// its operations port serves (the log line "serving operations"), before
// its CA is open; s.grpc is empty.
func startServeOps(t *testing.T, dir string, extra ...string) *server {
	t.Helper()
	s, err := launch(t, "serving operations", dir, extra...)
	require.NoError(t, err)
	return s
}

// launch starts meshca serve and returns once it has logged the message
// until with its addresses.
func launch(t *testing.T, until, dir string, extra ...string) (*server, error) {
	args := append([]string{"serve", "--dir", dir, "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(meshcaBin, args...)
	pr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, done: make(chan error, 1), exited: make(chan struct{})}
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Bytes()
			s.mu.Lock()
			s.stderr.Write(line)
			s.stderr.WriteByte('\n')
			s.mu.Unlock()
			var ev struct {
				Msg  string `json:"msg"`
				GRPC string `json:"grpc"`
				Ops  string `json:"ops"`
			}
			if json.Unmarshal(line, &ev) == nil && ev.Msg == until {
				select {
				case addrs <- [2]string{ev.GRPC, ev.Ops}:
				default: // one start, reported once
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
		err := cmd.Wait()
		close(s.exited)
		s.done <- err
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.exited // not s.done: the select below may have taken its value
	})
	select {
	case a := <-addrs:
		s.grpc, s.ops = a[0], a[1]
	case err := <-s.done:
		s.done <- err // for the cleanup, which waits on it
		return nil, fmt.Errorf("meshca serve exited early: %v\n%s", err, s.logs())
	case <-time.After(20 * time.Second):
		return nil, fmt.Errorf("meshca serve did not log %q within 20s:\n%s", until, s.logs())
	}
	return s, nil
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// waitReady polls /readyz until 200 or the deadline.
func (s *server) waitReady(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.ops+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("/readyz not 200 within %s:\n%s", within, s.logs())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return httpget.Get(t, url)
}

func splitPEM(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		out = append(out, c)
	}
	require.Empty(t, strings.TrimSpace(string(rest)))
	return out
}
