package hsmenv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/hsmenv"
)

func TestNew_InitialisesAnEmptyTokenInATempDirWithAPINFile(t *testing.T) {
	hsm := hsmenv.New(t, hsmenv.WithToken("meshca-test"))
	require.Equal(t, hsm.Conf, os.Getenv("SOFTHSM2_CONF"), "child processes inherit it")
	conf, err := os.ReadFile(hsm.Conf)
	require.NoError(t, err)
	require.Contains(t, string(conf), "directories.tokendir = "+filepath.Join(hsm.Dir, "tokens")+"\n")
	fi, err := os.Stat(hsm.PINFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	pin, err := os.ReadFile(hsm.PINFile)
	require.NoError(t, err)
	require.Equal(t, "pkcs11:module-path="+hsmenv.ModulePath+";token=meshca-test?pin-source="+hsm.PINFile, hsm.URI)
	require.NotContains(t, hsm.URI, string(pin))
	objs, err := hsm.Objects()
	require.NoError(t, err)
	require.Empty(t, objs, "a fresh token")
	tokens, err := os.ReadDir(filepath.Join(hsm.Dir, "tokens"))
	require.NoError(t, err)
	require.Len(t, tokens, 1, "the token lives in the test's directory, not /var/lib/softhsm")
}

// fatalTB records the message of Fatalf and ends the goroutine, as
// testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestNew_WithoutSoftHSM2SaysToRunMakeDeps(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no softhsm2-util on it
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hsmenv.New(f)
	}()
	<-done
	require.True(t, strings.Contains(f.msg, "run make deps"), "got %q", f.msg)
	require.Contains(t, f.msg, "softhsm2")
}
