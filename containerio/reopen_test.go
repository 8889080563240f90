package containerio

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestSignalReopen(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "log-driver.pid")
	write := func(pid int) {
		t.Helper()
		if err := os.WriteFile(pidfile, []byte(strconv.Itoa(pid)), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// A process started with the pid file among its options, as an IO
	// process is: it gets the signal (and reports it by exiting 0).
	// It writes a ready file once its trap is set.
	marker, ready := filepath.Join(dir, "got-usr1"), filepath.Join(dir, "ready")
	io := exec.Command("sh", "-c", `trap 'touch "$0"; exit 0' USR1; touch "$3"; while :; do sleep 0.05; done`, marker, optPidFile, pidfile, ready)
	if err := io.Start(); err != nil {
		t.Fatal(err)
	}
	defer io.Process.Kill()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the IO process did not set its trap within 10 s")
		}
	}
	write(io.Process.Pid)
	if err := SignalReopen(pidfile); err != nil {
		t.Fatalf("SignalReopen of a live IO process: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- io.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the IO process got no SIGUSR1")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the IO process did not see SIGUSR1: %v", err)
	}

	// A reused PID: a process that is not this container's IO process.
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Process.Kill()
	write(other.Process.Pid)
	if err := SignalReopen(pidfile); !errors.Is(err, ErrNoIOProcess) {
		t.Errorf("SignalReopen of a PID reused by another process = %v, want ErrNoIOProcess", err)
	}
	otherDone := make(chan error, 1)
	go func() { otherDone <- other.Wait() }()
	select {
	case err := <-otherDone:
		t.Errorf("the unrelated process was signalled: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	// A PID no process has, and no pid file at all.
	write(1 << 22)
	if err := SignalReopen(pidfile); !errors.Is(err, ErrNoIOProcess) {
		t.Errorf("SignalReopen of a dead PID = %v, want ErrNoIOProcess", err)
	}
	os.Remove(pidfile)
	if err := SignalReopen(pidfile); !errors.Is(err, ErrNoIOProcess) {
		t.Errorf("SignalReopen without a pid file = %v, want ErrNoIOProcess", err)
	}
}
