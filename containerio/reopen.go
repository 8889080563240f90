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

// ErrNoIOProcess is returned by SignalReopen when the IO process that wrote
// the pid file is gone.
var ErrNoIOProcess = errors.New("the container's IO process is gone")

// SignalReopen asks the IO process whose PID is in pidfile to reopen its
// log file (SIGUSR1). A pid file can outlive its process (one killed with
// SIGKILL removes nothing), and its PID can then be another process's: the
// signal is sent only to a process that was started with this very pid
// file among its options, as every IO process is.
func SignalReopen(pidfile string) error {
	raw, err := os.ReadFile(pidfile)
	if errors.Is(err, os.ErrNotExist) {
		return ErrNoIOProcess
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("pid file %s holds no PID: %q", pidfile, raw)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ErrNoIOProcess
	}
	if !hasOption(bytes.Split(bytes.TrimSuffix(cmdline, []byte{0}), []byte{0}), OptPidFile, pidfile) {
		return ErrNoIOProcess // the PID is another process's now
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); errors.Is(err, syscall.ESRCH) {
		return ErrNoIOProcess
	} else if err != nil {
		return fmt.Errorf("signalling the IO process %d: %w", pid, err)
	}
	return nil
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
