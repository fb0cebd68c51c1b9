package vaultenv

import "syscall"

// sysProcAttr kills the server when the test binary dies without calling
// Stop (a panic or a -timeout), so no Vault outlives its tests.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
