package logbuf

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// A write after the test has completed is dropped, not a panic
// ("Write called after ... has completed"). The testing package panics
// once every test has returned, which is where controller-runtime's
// stragglers wrote in CI: after PASS, while TestMain tore the test
// environment down. So the write comes from TestMain of a child process
// of this test binary.
func TestForTest_DropsWritesAfterCompletion(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildLeaksWriter$", "-test.v")
	cmd.Env = append(os.Environ(), "LOGBUF_CHILD=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child:\n%s", out)
	require.Contains(t, string(out), "while running")
	require.Contains(t, string(out), "late write dropped")
	require.NotContains(t, string(out), "after completion")
}

var leaked io.Writer

func TestMain(m *testing.M) {
	code := m.Run()
	if os.Getenv("LOGBUF_CHILD") != "" {
		msg := []byte("after completion\n")
		if n, err := leaked.Write(msg); err != nil || n != len(msg) {
			fmt.Printf("late write: %d, %v\n", n, err)
			os.Exit(1)
		}
		fmt.Println("late write dropped")
	}
	os.Exit(code)
}

// TestChildLeaksWriter runs only in the child of
// TestForTest_DropsWritesAfterCompletion.
func TestChildLeaksWriter(t *testing.T) {
	if os.Getenv("LOGBUF_CHILD") == "" {
		return
	}
	leaked = ForTest(t)
	_, err := leaked.Write([]byte("while running\n"))
	require.NoError(t, err)
}
