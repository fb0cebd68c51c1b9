//go:build !linux

package vaultenv

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
