package vaultenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr kills the server when the test binary dies without calling
// Stop (a panic or a -timeout), so no Vault outlives its tests.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitStopped waits until every thread of pid is stopped: SIGSTOP is
// delivered asynchronously, and a thread still running could answer one
// more request.
func waitStopped(pid int) error {
	deadline := time.Now().Add(5 * time.Second)
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	for {
		stopped, err := allThreadsStopped(dir)
		if err != nil {
			return err
		}
		if stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vaultenv: process %d not stopped after SIGSTOP", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func allThreadsStopped(taskDir string) (bool, error) {
	tasks, err := os.ReadDir(taskDir)
	if err != nil {
		return false, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(taskDir + "/" + t.Name() + "/stat")
		if err != nil {
			continue // the thread exited
		}
		// The state follows the parenthesised command name: "pid (comm) S ...".
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("vaultenv: unexpected %s/stat: %q", t.Name(), b)
		}
		if state := b[i+2]; state != 'T' && state != 't' {
			return false, nil
		}
	}
	return true, nil
}
