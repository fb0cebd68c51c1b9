package boltstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// missingDirs returns dir and its ancestors that do not exist yet,
// outermost first: the directories os.MkdirAll(dir) will create.
func missingDirs(dir string) []string {
	var out []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			break
		}
		out = append([]string{d}, out...)
		if filepath.Dir(d) == d {
			break
		}
	}
	return out
}

// syncDirs fsyncs each directory, so that the names just created in it
// survive a power loss: syncing a file "does not necessarily ensure that
// the entry in the directory containing the file has also reached disk.
// For that an explicit fsync() on a file descriptor for the directory is
// also needed" (fsync(2)). A variable for the tests.
var syncDirs = func(dirs []string) error {
	for _, d := range dirs {
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
