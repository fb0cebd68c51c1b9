//go:build !linux

package vaultenv

import (
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// waitStopped gives SIGSTOP a moment to take effect where /proc is missing.
func waitStopped(int) error {
	time.Sleep(100 * time.Millisecond)
	return nil
}
