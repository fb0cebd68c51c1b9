package rootrotation

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// The child process of the kill -9 tests: the test binary run again with
// these variables set opens the CA of childA (through Open, on the real
// clock), starts a rotation to childB's root and drives it until the
// phase childStop is journaled; then it says so and waits to be killed.
const (
	childA    = "MESHCA_ROOTROT_CHILD_A"
	childB    = "MESHCA_ROOTROT_CHILD_B"
	childStop = "MESHCA_ROOTROT_CHILD_STOP"
)

func TestMain(m *testing.M) {
	if os.Getenv(childA) != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

func childMain() int {
	ctx := context.Background()
	cfg := config.Defaults(os.Getenv(childA))
	newRoot := config.Defaults(os.Getenv(childB)).Root
	stop := Phase(os.Getenv(childStop))
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	rt, m, ctl, err := Open(ctx, cfg, nil, log, nil, func(o *Options) {
		o.OnEnter = func(p Phase) {
			if p == stop {
				fmt.Printf("journaled %s\n", string(p))
				select {} // killed here: journaled, not acted on
			}
		}
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	now := time.Now()
	// A leaf under A keeps wait-out-ttl waiting.
	if err := rt.Store.PutIssuance(ctx, store.Issuance{Serial: "0a", Identity: "spiffe://cluster.local/ns/a/sa/a", NotBefore: now, NotAfter: now.Add(time.Hour),
		Fingerprint: "0a", Generation: m.Active().Generation, IssuedAt: now}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	steps := []func() error{
		func() error { _, err := ctl.Start(ctx, StartRequest{NewRoot: newRoot, By: "child"}); return err },
		func() error { ctl.Step(ctx); return nil },
		func() error { _, err := ctl.Advance(ctx, "child"); return err },
		func() error { ctl.Step(ctx); return nil },
		func() error { _, err := ctl.Advance(ctx, "child"); return err },
	}
	for _, f := range steps {
		if err := f(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	fmt.Println("never stopped; status:", ctl.RotationStatus().Phase, ctl.RotationStatus().Problem)
	return 1
}

// killAt runs the child until it has journaled phase p, then kills it
// with SIGKILL.
func killAt(t *testing.T, aDir, bDir string, p Phase) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childA+"="+aDir, childB+"="+bDir, childStop+"="+string(p))
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "journaled "+string(p)+"\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child: %q %v\n%s", line, err, stderr.String())
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_, _ = io.Copy(io.Discard, out)
	err = cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "the child died of SIGKILL: %v", err)
}

// kill -9 right after phases 1, 3 and 5 are journaled (before they act):
// meshca restarted on the same store resumes each, with the roots and the
// intermediate the phase says, and finishes the rotation with exactly one
// intermediate under B.
func TestKill9_ResumesAfterPhases1_3_5(t *testing.T) {
	for _, p := range []Phase{PhasePublish, PhaseSwitch, PhaseRemove} {
		t.Run(string(p), func(t *testing.T) {
			aDir, bDir := caDirs(t)
			killAt(t, aDir, bDir, p)
			s := openServed(t, aDir, bDir)
			a, b := readRoot(t, s.cfg.Root), readRoot(t, s.bCfg)
			require.Equal(t, p, s.phase(), "the journal")
			require.Equal(t, string(p), s.ctl.RotationStatus().Phase, "the status")
			switch p {
			case PhasePublish:
				samePEM(t, root.EncodePEM(a, b), s.rootsPEM(), "phase 1 starts with both roots")
				require.NoError(t, s.m.Active().Bundle.Cert.CheckSignatureFrom(a))
				s.step()
				require.Equal(t, PhaseWaitWorkloads, s.phase())
			case PhaseSwitch:
				samePEM(t, root.EncodePEM(a, b), s.rootsPEM(), "")
				require.NoError(t, s.m.Active().Bundle.Cert.CheckSignatureFrom(a), "the switch did not happen before the kill")
				s.step()
				require.Equal(t, PhaseWaitTTL, s.phase())
				require.NoError(t, s.m.Active().Bundle.Cert.CheckSignatureFrom(b))
			case PhaseRemove:
				samePEM(t, root.EncodePEM(b), s.rootsPEM(), "phase 5 starts with B alone")
				require.NoError(t, s.m.Active().Bundle.Cert.CheckSignatureFrom(b))
			}
			// The rest of the rotation, its waits ended by an operator.
			for i := 0; i < 6 && s.phase() != PhaseDone; i++ {
				if s.phase().isWait() {
					_, err := s.ctl.Advance(context.Background(), "test")
					require.NoError(t, err)
				}
				s.step()
			}
			require.Equal(t, PhaseDone, s.phase(), "%s", s.ctl.RotationStatus().Problem)
			samePEM(t, root.EncodePEM(b), s.rootsPEM(), "done")
			gens, err := s.rt.Store.ListGenerations(context.Background())
			require.NoError(t, err)
			underB := 0
			for _, g := range gens {
				c, err := x509.ParseCertificate(g.CertDER)
				require.NoError(t, err)
				if c.CheckSignatureFrom(b) == nil {
					underB++
				}
			}
			require.Equal(t, 1, underB, "exactly one intermediate under B")
		})
	}
}
