// Package pgenv runs a real PostgreSQL server for meshca's tests.
//
// It owns the test server only: finding the binaries of Debian's
// postgresql package (/usr/lib/postgresql/<version>/bin, the newest
// version; they are not on PATH), creating a cluster with initdb in a
// temporary directory, running the postmaster on a free loopback port with
// its Unix socket inside that directory, handing out connection strings
// and fresh databases, and crashing, restarting and stopping the server
// for fault tests. It must not hold any meshca logic.
//
// initdb and postgres refuse to run as root, so when the tests run as
// root the server runs as the postgres system user the package creates
// (the temporary directory is given to it), like `runuser -u postgres`.
// The server keeps PostgreSQL's durable defaults (fsync on,
// synchronous_commit on); password authentication (scram-sha-256) guards
// TCP connections. When the binaries are missing, Start fails with a
// message that says to run `make deps`; tests never skip.
package pgenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshca/meshca/test/logbuf"
)

// User is the cluster's superuser, the user of every connection string.
const User = "meshca"

// Env is a running PostgreSQL cluster.
type Env struct {
	// Host and Port are the loopback TCP address of the server.
	Host string
	Port int
	// Password is User's password (random per Start).
	Password string
	// Version is the server's major version (the newest one installed).
	Version int

	bin     string // the directory of postgres, initdb, ...
	dir     string // owned by the server's user: data/, the socket, the password file
	cred    *syscall.Credential
	out     *logbuf.Buffer
	outCopy io.Writer
	timeout time.Duration

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

type options struct {
	startTimeout time.Duration
	output       io.Writer
}

// Option configures Start.
type Option func(*options)

// WithStartTimeout bounds the wait for the server to accept connections
// (default 60s).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// WithOutput copies the server's log to w as well.
func WithOutput(w io.Writer) Option { return func(o *options) { o.output = w } }

// Start creates a cluster in a new temporary directory and runs it.
func Start(opts ...Option) (*Env, error) {
	o := &options{startTimeout: 60 * time.Second}
	for _, f := range opts {
		f(o)
	}
	bin, version, err := findBinaries()
	if err != nil {
		return nil, err
	}
	e := &Env{Host: "127.0.0.1", Version: version, bin: bin, out: &logbuf.Buffer{}, outCopy: o.output, timeout: o.startTimeout}
	if e.Port, err = freePort(); err != nil {
		return nil, err
	}
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	e.Password = hex.EncodeToString(pw)
	if e.dir, err = os.MkdirTemp("", "meshca-pgenv-"); err != nil {
		return nil, err
	}
	if err := e.initdb(); err != nil {
		_ = os.RemoveAll(e.dir)
		return nil, err
	}
	if err := e.start(); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

// initdb creates the cluster in dir/data as the server's user.
func (e *Env) initdb() error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("pgenv: running as root, the server must run as the postgres system user, which is missing (%v): run `make deps` (installs Debian's postgresql)", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		e.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(e.dir, uid, gid); err != nil {
			return fmt.Errorf("pgenv: give %s to the postgres user: %w", e.dir, err)
		}
	}
	pwfile := filepath.Join(e.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(e.Password+"\n"), 0o600); err != nil {
		return err
	}
	if e.cred != nil {
		if err := os.Chown(pwfile, int(e.cred.Uid), int(e.cred.Gid)); err != nil {
			return err
		}
	}
	defer os.Remove(pwfile)
	cmd := exec.Command(filepath.Join(e.bin, "initdb"), "-D", e.dataDir(), "-U", User, "--pwfile="+pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")
	cmd.Dir = e.dir
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.cred, Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgenv: initdb: %w\n%s", err, out)
	}
	return nil
}

func (e *Env) dataDir() string { return filepath.Join(e.dir, "data") }

// start runs the postmaster and waits until it accepts connections.
func (e *Env) start() error {
	cmd := exec.Command(filepath.Join(e.bin, "postgres"), "-D", e.dataDir(),
		"-p", strconv.Itoa(e.Port), "-k", e.dir,
		"-c", "listen_addresses="+e.Host, "-c", "max_connections=200")
	cmd.Dir = e.dir
	cmd.Env = childEnv()
	var w io.Writer = e.out
	if e.outCopy != nil {
		w = io.MultiWriter(e.out, e.outCopy)
	}
	cmd.Stdout, cmd.Stderr = w, w
	// Its own process group, so that Kill takes the backends too; killed
	// with the test binary, so that no server outlives its tests.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgenv: starting postgres: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	e.mu.Lock()
	e.cmd, e.done = cmd, done
	e.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	var last error
	for {
		c, err := pgx.Connect(ctx, e.URL("postgres"))
		if err == nil {
			_ = c.Close(ctx)
			return nil
		}
		last = err
		select {
		case <-done:
			return fmt.Errorf("pgenv: postgres exited (%v)\n--- server log ---\n%s", cmd.ProcessState, e.out.String())
		case <-ctx.Done():
			return fmt.Errorf("pgenv: postgres did not accept connections on %s:%d: %v\n--- server log ---\n%s", e.Host, e.Port, last, e.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ConnString is the libpq keyword/value connection string of database db,
// without the password (give Password separately, as meshca's
// store.passwordFile does).
func (e *Env) ConnString(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", e.Host, e.Port, User, db)
}

// URL is a postgres:// URL of database db with the password in it, for
// test code that connects directly.
func (e *Env) URL(db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", User, e.Password, net.JoinHostPort(e.Host, strconv.Itoa(e.Port)), db)
}

// CreateDatabase creates a fresh, empty database for one test and returns
// its name; the test's cleanup drops it.
func (e *Env) CreateDatabase(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "meshca_test_" + hex.EncodeToString(b)
	if err := e.admin(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgenv: create database: %v", err)
	}
	t.Cleanup(func() {
		if err := e.admin(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgenv: drop database %s: %v", name, err)
		}
	})
	return name
}

// Exec runs sql in database db as the superuser.
func (e *Env) Exec(ctx context.Context, db, sql string, args ...any) error {
	c, err := pgx.Connect(ctx, e.URL(db))
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(ctx, sql, args...)
	return err
}

func (e *Env) admin(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return e.Exec(ctx, "postgres", sql)
}

// Kill crashes the server: SIGKILL to the postmaster and every backend
// (its process group), with no shutdown checkpoint, as a power cut does to
// the processes (the kernel's page cache survives; the WAL that commits
// flushed is what recovery replays). Restart brings it back.
func (e *Env) Kill() error {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.mu.Unlock()
	if cmd == nil {
		return errors.New("pgenv: not running")
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("pgenv: kill: %w", err)
	}
	<-done
	return e.waitBackendsGone(cmd.Process.Pid)
}

// waitBackendsGone waits until no process of the killed group is left
// (a backend still holding the shared memory would stop the restart).
func (e *Env) waitBackendsGone(pgid int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgenv: processes of group %d still alive 10s after SIGKILL", pgid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StopServer shuts the server down in fast mode (SIGINT: connections are
// closed, a checkpoint is written) and keeps its data for Restart.
func (e *Env) StopServer() error {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	return e.waitBackendsGone(cmd.Process.Pid)
}

// Restart stops the server (fast mode) if it runs and starts it again on
// the same data and port; after Kill it runs crash recovery first.
func (e *Env) Restart() error {
	if err := e.StopServer(); err != nil {
		return err
	}
	return e.start()
}

// Running reports whether the postmaster is running.
func (e *Env) Running() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done == nil {
		return false
	}
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

// Output returns what the server has logged so far.
func (e *Env) Output() string { return e.out.String() }

// Stop shuts the server down and removes its directory. It is safe to
// call more than once.
func (e *Env) Stop() {
	if e == nil {
		return
	}
	_ = e.StopServer()
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// RunMain starts one server for a whole test package, stores it in *env,
// runs the tests and stops it. Use it from TestMain:
//
//	var pg *pgenv.Env
//
//	func TestMain(m *testing.M) { os.Exit(pgenv.RunMain(m, &pg)) }
//
// When the server cannot start (for example because `make deps` has not
// installed PostgreSQL) it prints why and returns 1: the tests fail, they
// are never skipped.
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

// binRoot is where Debian's postgresql-<version> package installs its
// server binaries (a variable for the tests).
var binRoot = "/usr/lib/postgresql"

// findBinaries returns the bin directory of the newest PostgreSQL
// installed, failing with "run `make deps`" when there is none.
func findBinaries() (string, int, error) {
	matches, _ := filepath.Glob(filepath.Join(binRoot, "*", "bin", "initdb"))
	var versions []int
	for _, m := range matches {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m))))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(m), "postgres")); err == nil {
			versions = append(versions, v)
		}
	}
	if len(versions) == 0 {
		return "", 0, fmt.Errorf("pgenv: no PostgreSQL server in %s/*/bin (initdb and postgres): run `make deps` (installs Debian's postgresql package)", binRoot)
	}
	v := slices.Max(versions)
	return filepath.Join(binRoot, strconv.Itoa(v), "bin"), v, nil
}

// childEnv is the test's environment without PG* variables (a developer's
// PGDATA or PGPASSWORD must not leak in), with the C locale.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgenv: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
