package main

// What a server process costs and where it runs, for the peer benchmark:
// CPU and memory from /proc, system calls and samples from perf(1), the
// file system of its store.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// fsType names the file system of dir (statfs(2) magic numbers), so that
// a figure with durability on is not quietly one on tmpfs.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "file system unknown"
	}
	switch st.Type {
	case 0x01021994:
		return "tmpfs: fsync costs nothing here, an upper bound"
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("file system 0x%x", st.Type)
}

// perfRecord samples process pid with perf(1) (software cpu-clock, call
// graphs) into DIR/NAME.perf until stop is called; `perf report -i` reads it.
func perfRecord(dir, name string, pid int) (stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command("perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", filepath.Join(dir, name+".perf"))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf record (Debian package linux-perf): %w", err)
	}
	var once sync.Once // stopped after the run, and deferred for a run that fails
	return func() { once.Do(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }) }, nil
}

// perfStat counts the system calls and context switches of process pid
// with perf-stat(1) until the returned function is called, which returns
// the counts; it also stops perf stat on a run that failed before them.
func perfStat(pid int) (func() (syscalls, switches float64, err error), error) {
	f, err := os.CreateTemp("", "meshca-peer-stat-")
	if err != nil {
		return nil, err
	}
	f.Close()
	cmd := exec.Command("perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter,context-switches", "-p", strconv.Itoa(pid), "-o", f.Name())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("perf stat (Debian package linux-perf): %w", err)
	}
	// Called a second time (the deferred cleanup of a run that failed
	// before its counts were read), it stops nothing more and fails.
	var once sync.Once
	return func() (float64, float64, error) {
		var out []byte
		err := errors.New("perf stat already stopped")
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
			out, err = os.ReadFile(f.Name())
			os.Remove(f.Name())
		})
		if err != nil {
			return 0, 0, err
		}
		sc, cs, err := parsePerfStat(out)
		if err != nil {
			return 0, 0, fmt.Errorf("perf stat: %w (stderr: %s)", err, strings.TrimSpace(stderr.String()))
		}
		return sc, cs, nil
	}, nil
}

// parsePerfStat reads the counts of raw_syscalls:sys_enter and
// context-switches from perf stat's CSV output (-x ,): value, unit,
// event, … per line; "<not supported>" or "<not counted>" is an error.
func parsePerfStat(out []byte) (syscalls, switches float64, err error) {
	syscalls, switches = -1, -1
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 || strings.HasPrefix(line, "#") {
			continue
		}
		var dst *float64
		switch f[2] {
		case "raw_syscalls:sys_enter":
			dst = &syscalls
		case "context-switches":
			dst = &switches
		default:
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q is not a count (are tracepoints readable? perf_event_paranoid, tracefs)", f[2], f[0])
		}
		*dst = v
	}
	if syscalls < 0 || switches < 0 {
		return 0, 0, fmt.Errorf("no raw_syscalls:sys_enter or context-switches count in %q", out)
	}
	return syscalls, switches, nil
}

// procCPU is the user+system CPU seconds process pid has used
// (proc(5): /proc/PID/stat fields 14 and 15, in clock ticks).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/PID/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const ticks = 100 // sysconf(_SC_CLK_TCK) on Linux
	return (utime + stime) / ticks, nil
}

// procRSS is the resident set size of process pid in MiB (proc(5): VmRSS).
func procRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
