package containerio

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Containers started by peapod before the IO server each had an IO process
// of their own (a log driver the shim ran), which recorded its PID in a pid
// file for ReopenContainerLog's SIGUSR1. Those that still run keep it until
// they end, and are served by what follows.

// optPidFile was the IO process's option naming its pid file.
const optPidFile = "pidfile"

// ErrNoIOProcess is returned by SignalReopen when the IO process that wrote
// the pid file is gone.
var ErrNoIOProcess = errors.New("the container's IO process is gone")

// SignalReopen asks the IO process whose PID is in pidfile to reopen its
// log file (SIGUSR1), and only that process (see ioProcess).
func SignalReopen(pidfile string) error {
	pid, err := ioProcess(pidfile)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); errors.Is(err, syscall.ESRCH) {
		return ErrNoIOProcess
	} else if err != nil {
		return fmt.Errorf("signalling the IO process %d: %w", pid, err)
	}
	return nil
}

// Running reports whether the IO process whose PID is in pidfile still
// runs: it removes the file when it has written its last output.
func Running(pidfile string) bool {
	_, err := ioProcess(pidfile)
	return err == nil
}

// ioProcess returns the PID in pidfile if that process is the IO process
// that wrote it (started with this pid file among its options), else
// ErrNoIOProcess: a pid file can outlive its process (one killed with
// SIGKILL removes nothing), and its PID can then be another process's.
func ioProcess(pidfile string) (int, error) {
	raw, err := os.ReadFile(pidfile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrNoIOProcess
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds no PID: %q", pidfile, raw)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, ErrNoIOProcess
	}
	if !hasOption(bytes.Split(bytes.TrimSuffix(cmdline, []byte{0}), []byte{0}), optPidFile, pidfile) {
		return 0, ErrNoIOProcess // the PID is another process's now
	}
	return pid, nil
}

// hasOption reports whether the "key value" option pair is among args
// (after the program name, at any position).
func hasOption(args [][]byte, key, value string) bool {
	for i := 1; i+1 < len(args); i++ {
		if string(args[i]) == key && string(args[i+1]) == value {
			return true
		}
	}
	return false
}
