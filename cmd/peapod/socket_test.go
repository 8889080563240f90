package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// socketPath returns a socket path in a not yet existing directory. The
// temp dir is kept short: a unix socket path has at most 107 bytes.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "peapod-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "run", "peapod", "peapod.sock")
}

func mustListenCRI(t *testing.T, path string) (net.Listener, func()) {
	t.Helper()
	l, release, err := listenCRI(path)
	if err != nil {
		t.Fatalf("listenCRI(%s): %v", path, err)
	}
	t.Cleanup(release)
	return l, release
}

// serves checks that l accepts a connection made to path.
func serves(t *testing.T, l net.Listener, path string) {
	t.Helper()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", path, err)
	}
	c.Close()
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatalf("accepting on %s: %v", path, err)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("the listener did not accept the connection to %s", path)
	}
}

func TestListenCRICreatesSocket(t *testing.T) {
	path := socketPath(t)
	l, release := mustListenCRI(t, path)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode = %v, want a socket with 0660", fi.Mode())
	}
	pid, err := os.ReadFile(path + ".lock")
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q (%v), want this pid %d", pid, err, os.Getpid())
	}
	serves(t, l, path)

	release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after release: %v", err)
	}
}

func TestListenCRIRefusesSecondPeapod(t *testing.T) {
	path := socketPath(t)
	l, _ := mustListenCRI(t, path)

	l2, release2, err := listenCRI(path)
	if err == nil {
		release2()
		l2.Close()
		t.Fatal("a second listenCRI on the same socket succeeded")
	}
	for _, w := range []string{"already serving", path, "pid " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	// The first keeps its socket.
	serves(t, l, path)
}

func TestListenCRIReplacesStaleSocket(t *testing.T) {
	cases := []struct {
		name  string
		stale func(t *testing.T, path string)
	}{
		{"socket left by a dead peapod", func(t *testing.T, path string) {
			l, release, err := listenCRI(path)
			if err != nil {
				t.Fatal(err)
			}
			// As after SIGKILL: the socket file stays, the lock is released
			// (the kernel drops a dead process's flock) and holds its pid.
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			release()
		}},
		{"socket nobody listens on", func(t *testing.T, path string) {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		}},
		{"plain file", func(t *testing.T, path string) {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("junk"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path+".lock", []byte("999999999\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			tc.stale(t, path)
			if _, err := os.Lstat(path); err != nil {
				t.Fatalf("no stale file to replace: %v", err)
			}
			l, _ := mustListenCRI(t, path)
			if fi, err := os.Stat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
				t.Fatalf("after listenCRI: %v, %v", fi, err)
			}
			serves(t, l, path)
		})
	}
}

func TestListenCRIKeepsOtherProgramsSocket(t *testing.T) {
	path := socketPath(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	other, err := net.Listen("unix", path) // no lock file: not a peapod
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	l, release, err := listenCRI(path)
	if err == nil {
		release()
		l.Close()
		t.Fatal("listenCRI took over a socket another program serves")
	}
	if !strings.Contains(err.Error(), "served by another process") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say the socket is someone else's", err)
	}
	// The other program still has its socket, and peapod's lock is free again.
	serves(t, other, path)
	other.Close()
	mustListenCRI(t, path)
}
