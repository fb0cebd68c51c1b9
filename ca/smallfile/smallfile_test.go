package smallfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	require.NoError(t, os.WriteFile(small, []byte("hello"), 0o600))
	big := filepath.Join(dir, "big")
	require.NoError(t, os.WriteFile(big, make([]byte, 11), 0o600))
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))

	b, err := Read(small, 10)
	require.NoError(t, err)
	require.Equal(t, "hello", string(b))

	_, err = Read(big, 10)
	require.EqualError(t, err, big+" is larger than 10 bytes")

	_, err = Read(filepath.Join(dir, "nope"), 10)
	require.True(t, errors.Is(err, fs.ErrNotExist), "%v", err)

	done := make(chan error, 1)
	go func() { _, err := Read(fifo, 10); done <- err }()
	select {
	case err := <-done:
		require.EqualError(t, err, fifo+" is not a regular file")
	case <-time.After(5 * time.Second):
		t.Fatal("Read blocked on a FIFO without a writer")
	}

	_, err = Read("/dev/zero", 0)
	require.EqualError(t, err, "/dev/zero is not a regular file")
	_, err = Read(dir, 0)
	require.EqualError(t, err, dir+" is not a regular file")
}
