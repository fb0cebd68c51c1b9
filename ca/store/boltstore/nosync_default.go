//go:build !meshca_nosync_check

package boltstore

// checkNoSync is false in every real build: bbolt fsyncs each commit.
const checkNoSync = false
