package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
)

// kubeletServe runs meshca serve on fixed loopback ports and starts it
// again after it exits, on the same ports, as the kubelet restarts a pod's
// container (restartPolicy: Always) with its back-off of 10 s, doubled on
// each exit up to 300 s (Kubernetes documentation, "Pod Lifecycle",
// container restarts), so that a fault that makes meshca exit is measured
// as an operator sees it.
type kubeletServe struct {
	t         *testing.T
	dir       string
	grpc, ops string
	mu        sync.Mutex
	cur       *server
	old       []*server
	exits     []string
	stop      chan struct{}
	done      chan struct{}
}

func startKubeletServe(t *testing.T, dir string) *kubeletServe {
	t.Helper()
	k := &kubeletServe{t: t, dir: dir, grpc: freeLoopback(t), ops: freeLoopback(t), stop: make(chan struct{}), done: make(chan struct{})}
	k.cur = startServe(t, dir, k.args()...)
	go k.run()
	t.Cleanup(k.halt)
	return k
}

func (k *kubeletServe) args() []string { return []string{"--listen", k.grpc, "--ops-listen", k.ops} }

func (k *kubeletServe) run() {
	defer close(k.done)
	backoff := 10 * time.Second
	for {
		k.mu.Lock()
		cur := k.cur
		k.mu.Unlock()
		select {
		case <-k.stop:
			return
		case <-cur.exited:
		}
		k.mu.Lock()
		k.exits = append(k.exits, exitReason(cur.logs()))
		k.mu.Unlock()
		for {
			select {
			case <-k.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 300*time.Second)
			s, err := launchServe(k.t, k.dir, k.args()...)
			if err == nil {
				k.mu.Lock()
				k.old, k.cur = append(k.old, cur), s
				k.mu.Unlock()
				break
			}
			k.mu.Lock()
			k.exits = append(k.exits, exitReason(err.Error()))
			k.mu.Unlock()
		}
	}
}

func (k *kubeletServe) halt() {
	select {
	case <-k.stop:
	default:
		close(k.stop)
	}
	<-k.done
}

func (k *kubeletServe) current() *server {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur
}

// metricIs reports whether the current meshca serve runs and exposes
// name with the value want.
func (k *kubeletServe) metricIs(t *testing.T, name string, want float64) bool {
	s := k.current()
	select {
	case <-s.exited:
		return false
	default:
		return s.metricIs(t, name, want)
	}
}

// leads reports whether the current meshca serve holds the Lease
// (meshca_lease_held) and runs its singleton jobs, the controllers among
// them (meshca_controller_leader).
func (k *kubeletServe) leads(t *testing.T) bool {
	return k.metricIs(t, "meshca_lease_held", 1) && k.metricIs(t, "meshca_controller_leader", 1)
}

// restarts lists why meshca exited, one entry per exit.
func (k *kubeletServe) restarts() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.exits)
}

func (k *kubeletServe) logs() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for i, s := range append(slices.Clone(k.old), k.cur) {
		fmt.Fprintf(&b, "--- meshca serve, run %d:\n%s", i+1, s.logs())
	}
	return b.String()
}

// exitReason is the "Error: ..." line meshca printed before exiting.
func exitReason(logs string) string {
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if r, ok := strings.CutPrefix(lines[i], "Error: "); ok {
			return r
		}
	}
	return "exited without an Error line"
}

// freeLoopback returns a loopback address with a port free right now.
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// revoker revokes certificates the load got back, one every 500 ms, with
// 'meshca revoke' (through the serve's admin socket), from the start of
// the fault until stop. Each is sent to the configurations dirs in turn
// until one acknowledges it (the command exits 0), as an operator retries
// at the next replica when one is down or does not hold the Lease.
type revoker struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	tried int
	acked []string
	by    map[string]int // dir -> revocations it acknowledged
}

func startRevoker(t *testing.T, l *faultLoad, dirs ...string) *revoker {
	r := &revoker{stopc: make(chan struct{}), done: make(chan struct{}), by: map[string]int{}}
	go func() {
		defer close(r.done)
		next := 0
		for {
			select {
			case <-r.stopc:
				return
			case <-time.After(500 * time.Millisecond):
			}
			var serial string
			for _, c := range l.snapshot()[next:] {
				next++
				if c.code == codes.OK {
					serial = c.serial
					break
				}
			}
			if serial == "" {
				continue
			}
			r.mu.Lock()
			r.tried++
			r.mu.Unlock()
			for _, dir := range dirs {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				err := exec.CommandContext(ctx, meshcaBin, "revoke", "--dir", dir, "--serial", serial, "--reason", "keyCompromise").Run()
				cancel()
				if err == nil {
					r.mu.Lock()
					r.acked = append(r.acked, serial)
					r.by[dir]++
					r.mu.Unlock()
					break
				}
			}
		}
	}()
	t.Cleanup(r.stop)
	return r
}

// ackedBy counts the revocations the configuration dir acknowledged.
func (r *revoker) ackedBy(dir string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.by[dir]
}

func (r *revoker) stop() {
	select {
	case <-r.stopc:
	default:
		close(r.stopc)
	}
	<-r.done
}

// check reads the revocations recorded in the store of the configuration
// args ('meshca revocations list') and notes on res how many were
// acknowledged and attempted, and every acknowledged one without a record;
// requireFaultResult asserts on them.
func (r *revoker) check(t *testing.T, res *faultResult, args ...string) {
	t.Helper()
	r.stop()
	out := meshca(t, append([]string{"revocations", "list", "-o", "json"}, args...)...)
	have := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var rec struct{ Serial string }
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		have[rec.Serial] = true
	}
	res.LostRevocations = []string{}
	for _, s := range r.acked {
		if !have[s] {
			res.LostRevocations = append(res.LostRevocations, s)
		}
	}
	res.Revoked = len(r.acked)
	res.Revocations = fmt.Sprintf("%d/%d", len(r.acked), r.tried)
}
