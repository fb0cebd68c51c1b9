// Package vaultenv runs a real HashiCorp Vault server in dev mode for
// meshca's integration tests.
//
// It owns the test Vault process only: starting the binary that
// test/tools/testbin.sh builds from source (bin/vault-1.21.0 in the
// repository root), waiting until it is healthy, handing out its address,
// root token and unseal key, and sealing, unsealing, pausing and stopping
// it for outage tests. It must not hold any meshca logic; tests configure
// PKI mounts and auth methods themselves through Client.
//
// Dev mode keeps everything in memory, listens on plain HTTP on a free
// loopback port, is initialised with a single unseal key and starts
// unsealed. When the binary is missing, Start fails with a message that
// says to run `make testbin`; tests never skip.
package vaultenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshca/meshca/test/reporoot"

	"github.com/meshca/meshca/test/logbuf"
)

// VaultVersion is the Vault version that test/tools/testbin.sh builds.
const VaultVersion = "1.21.0"

// Env is a running dev-mode Vault server.
type Env struct {
	// Addr is the server's URL, http://127.0.0.1:<port>.
	Addr string
	// RootToken is the dev root token (random per Start).
	RootToken string
	// UnsealKey is the single unseal key that dev mode printed (base64).
	UnsealKey string
	// Client talks to Addr with RootToken.
	Client *vaultapi.Client

	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	out    *syncBuffer
	home   string
	mu     sync.Mutex
	paused bool
}

type options struct {
	binary       string
	startTimeout time.Duration
	output       io.Writer
	logLevel     string
}

// Option configures Start.
type Option func(*options)

// WithBinary runs the vault binary at path instead of
// bin/vault-<VaultVersion>/vault in the repository root.
func WithBinary(path string) Option { return func(o *options) { o.binary = path } }

// WithStartTimeout bounds the wait for the server to become healthy
// (default 60s).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// WithOutput copies the server's output to w as well.
func WithOutput(w io.Writer) Option { return func(o *options) { o.output = w } }

// WithLogLevel sets the server's -log-level (default "warn").
func WithLogLevel(level string) Option { return func(o *options) { o.logLevel = level } }

// Start runs `vault server -dev` on a free loopback port with a random root
// token and waits until /v1/sys/health reports it initialised, unsealed and
// active.
func Start(opts ...Option) (*Env, error) {
	o := &options{startTimeout: 60 * time.Second, logLevel: "warn"}
	for _, opt := range opts {
		opt(o)
	}
	bin, err := binary(o.binary)
	if err != nil {
		return nil, err
	}
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	rootToken := "meshca-test-" + hex.EncodeToString(tok)
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	// A private HOME keeps the CLI's token helper and any state out of the
	// user's home; -dev-no-store-token keeps the root token out of it too.
	home, err := os.MkdirTemp("", "meshca-vaultenv-")
	if err != nil {
		return nil, err
	}

	cmd := exec.Command(bin, "server", "-dev",
		"-dev-root-token-id="+rootToken,
		"-dev-listen-address="+listen,
		"-dev-no-store-token",
		"-log-level="+o.logLevel,
	)
	cmd.Env = childEnv(home)
	out := &syncBuffer{}
	var w io.Writer = out
	if o.output != nil {
		w = io.MultiWriter(out, o.output)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(home)
		return nil, fmt.Errorf("vaultenv: starting %s: %w", bin, err)
	}
	e := &Env{
		Addr:      "http://" + listen,
		RootToken: rootToken,
		cmd:       cmd,
		done:      make(chan struct{}),
		out:       out,
		home:      home,
	}
	go func() {
		_ = cmd.Wait()
		close(e.done)
	}()

	e.Client, err = e.NewClient(rootToken)
	if err != nil {
		e.Stop()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.startTimeout)
	defer cancel()
	if err := e.waitHealthy(ctx); err != nil {
		e.Stop()
		return nil, fmt.Errorf("vaultenv: vault %s did not become healthy on %s: %w\n--- vault output ---\n%s", VaultVersion, e.Addr, err, out.String())
	}
	// Dev mode prints the unseal key just after it starts serving.
	for {
		if e.UnsealKey = out.field("Unseal Key: "); e.UnsealKey != "" {
			return e, nil
		}
		select {
		case <-ctx.Done():
			e.Stop()
			return nil, fmt.Errorf("vaultenv: no unseal key in dev-mode output:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// NewClient returns a new client for Addr with token (no token when
// empty), e.g. to log in through AppRole as meshca would.
func (e *Env) NewClient(token string) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vaultenv: %w", cfg.Error)
	}
	cfg.Address = e.Addr
	cfg.MaxRetries = 0
	cfg.Timeout = 30 * time.Second
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vaultenv: %w", err)
	}
	c.SetToken(token) // NewClient reads VAULT_TOKEN from the environment
	return c, nil
}

// Output returns what the server has printed so far.
func (e *Env) Output() string { return e.out.String() }

// Seal seals Vault: until Unseal, every request but health and seal status
// fails with 503 "Vault is sealed".
func (e *Env) Seal(ctx context.Context) error {
	if err := e.Client.Sys().SealWithContext(ctx); err != nil {
		return fmt.Errorf("vaultenv: sealing: %w", err)
	}
	st, err := e.Client.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return fmt.Errorf("vaultenv: seal status: %w", err)
	}
	if !st.Sealed {
		return errors.New("vaultenv: vault still unsealed after sys/seal")
	}
	return nil
}

// Unseal unseals Vault with UnsealKey and waits until it is active again.
// Dev mode keeps its in-memory data across a seal, so mounts, roles and
// tokens created before Seal work again.
func (e *Env) Unseal(ctx context.Context) error {
	st, err := e.Client.Sys().UnsealWithContext(ctx, e.UnsealKey)
	if err != nil {
		return fmt.Errorf("vaultenv: unsealing: %w", err)
	}
	if st.Sealed {
		return fmt.Errorf("vaultenv: still sealed after unseal (progress %d/%d)", st.Progress, st.T)
	}
	return e.waitHealthy(ctx)
}

// Pause freezes the server process (SIGSTOP): its port still accepts TCP
// connections but nothing answers, like a Vault behind a black-holed
// network. Clients see timeouts until Resume.
func (e *Env) Pause() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := syscall.Kill(e.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("vaultenv: pausing vault: %w", err)
	}
	e.paused = true
	return waitStopped(e.cmd.Process.Pid)
}

// Resume continues a server frozen by Pause.
func (e *Env) Resume() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := syscall.Kill(e.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("vaultenv: resuming vault: %w", err)
	}
	e.paused = false
	return nil
}

// Stop terminates the server (SIGTERM, then SIGKILL after 10s) and waits
// for it to exit. Everything Vault held is lost. It is safe to call more
// than once.
func (e *Env) Stop() {
	if e == nil || e.cmd == nil || e.cmd.Process == nil {
		return
	}
	select {
	case <-e.done:
	default:
		e.mu.Lock()
		if e.paused {
			_ = syscall.Kill(e.cmd.Process.Pid, syscall.SIGCONT)
			e.paused = false
		}
		e.mu.Unlock()
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.done
		}
	}
	_ = os.RemoveAll(e.home)
}

// Exited reports whether the server process has exited.
func (e *Env) Exited() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// RunMain starts one Vault for a whole test package, stores it in *env,
// runs the tests and stops it. Use it from TestMain:
//
//	var vault *vaultenv.Env
//
//	func TestMain(m *testing.M) { os.Exit(vaultenv.RunMain(m, &vault)) }
//
// When Vault cannot start (for example because `make testbin` has not been
// run) it prints why and returns 1: the tests fail, they are never skipped.
func RunMain(m *testing.M, env **Env, opts ...Option) int {
	e, err := Start(opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	*env = e
	defer e.Stop()
	return m.Run()
}

// waitHealthy polls sys/health until Vault is initialised, unsealed and
// active, or the process exits, or ctx ends.
func (e *Env) waitHealthy(ctx context.Context) error {
	var last error
	for {
		h, err := e.Client.Sys().HealthWithContext(ctx)
		switch {
		case err != nil:
			last = err
		case !h.Initialized || h.Sealed || h.Standby:
			last = fmt.Errorf("health: initialized=%v sealed=%v standby=%v", h.Initialized, h.Sealed, h.Standby)
		default:
			return nil
		}
		select {
		case <-e.done:
			return fmt.Errorf("vault exited (%v)", e.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// binary returns path, or bin/vault-<VaultVersion>/vault in the repository
// root, failing with "run `make testbin`" when it is missing.
func binary(path string) (string, error) {
	if path == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		path = filepath.Join(root, "bin", "vault-"+VaultVersion, "vault")
	}
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		reason := "not an executable file"
		if err != nil {
			reason = err.Error()
		}
		return "", fmt.Errorf("vaultenv: %s is missing (%s): run `make testbin` "+
			"(or `bash test/tools/testbin.sh`) to build vault %s from source", path, reason, VaultVersion)
	}
	return path, nil
}

func repoRoot() (string, error) {
	dir, err := reporoot.Dir()
	if err != nil {
		return "", fmt.Errorf("vaultenv: %w", err)
	}
	return dir, nil
}

// childEnv is the test's environment without VAULT_* variables (a developer's
// VAULT_ADDR or VAULT_TOKEN must not leak in) and with HOME set to home.
func childEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

// freePortPair returns a loopback port p such that p and p+1 are both free:
// Vault derives its cluster address from the listener's port + 1.
func freePortPair() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("vaultenv: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		_ = l.Close()
		if err == nil {
			_ = l2.Close()
			return p, nil
		}
	}
	return 0, errors.New("vaultenv: no free pair of loopback ports")
}

// syncBuffer collects the server's output for error messages and for the
// unseal key.
type syncBuffer struct{ logbuf.Buffer }

// field returns the rest of the first line starting with prefix.
func (b *syncBuffer) field(prefix string) string {
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), prefix); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
