// Package smallfile reads the small files meshca is named by an operator
// (certificates, keys, tokens) safely: only regular files, never blocking
// on a FIFO or device at open, and never more than a bound into memory.
package smallfile

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// MaxSize bounds what Read accepts when the caller names no tighter
// bound: far more than a bundle of root certificates or a private key.
const MaxSize = 1 << 20

// Read returns the content of the regular file at path, refusing a file
// larger than limit bytes (MaxSize when limit <= 0). The file is opened
// with O_NONBLOCK, so that a FIFO or device named by mistake (or by an
// attacker) is refused at once instead of blocking the reader, and it is
// checked to be a regular file on the open descriptor (fstat), not by
// name. Errors name path, never the content.
func Read(path string, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = MaxSize
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
