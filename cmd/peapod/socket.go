package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// listenCRI binds the CRI socket at path (mode 0660, parent directory
// created). A lock file beside the socket, held for peapod's lifetime, makes
// a second peapod on the same socket fail with a clear error; a socket file
// left behind by a peapod that died is replaced.
func listenCRI(path string) (net.Listener, func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, nil, fmt.Errorf("creating socket directory: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(lock.Name())
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("another peapod (pid %s) is already serving %s", strings.TrimSpace(string(pid)), path)
		}
		return nil, nil, fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	// The lock is ours, so no peapod serves the socket; but it may belong to
	// some other program, which must not lose it.
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		lock.Close()
		return nil, nil, fmt.Errorf("%s is served by another process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, nil, fmt.Errorf("removing stale socket: %w", err)
	}
	_ = lock.Truncate(0)
	_, _ = lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)

	l, err := net.Listen("unix", path)
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		lock.Close()
		return nil, nil, fmt.Errorf("setting socket mode: %w", err)
	}
	release := func() {
		l.Close() // removes the socket file
		lock.Close()
	}
	return l, release, nil
}
