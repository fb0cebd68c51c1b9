//go:build meshca_nosync_check

package boltstore

// checkNoSync is true only in binaries built with the meshca_nosync_check
// tag, which the durability tests use to prove that their fsync checker
// sees a missing fsync. Such a binary acknowledges records that are not on
// disk; it is never built for use.
const checkNoSync = true
