package container

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/pkg/cio"
	"golang.org/x/sys/unix"

	"github.com/peapod-cri/peapod/containerio"
)

// A container's stdio is fifos in its state directory, which the shim
// copies to and from the container (as for containerd's own CRI): stdout,
// stderr unless it has a terminal (whose one output is stdout), and stdin
// if it takes input. The node's IO server (see ioserver.go) reads the
// output fifos, writes the CRI log and serves attach clients; it outlives
// peapod, so logs flow and attach works across peapod's restarts.
//
// The shim holds the stdin fifo open for writing, so attach sessions can
// open and close it without the container seeing EOF; its stdin is closed
// explicitly, through the task's CloseIO.

// stateDir holds a container's runtime files: the attach socket, the stdio
// fifos.
func (m *Manager) stateDir(id string) string {
	return filepath.Join(m.config.StateDir, "containers", id)
}

// pidFile is where the IO process a container had of its own, when peapod
// started it before the IO server, recorded its PID (see containerio's
// SignalReopen).
func (m *Manager) pidFile(id string) string {
	return filepath.Join(m.stateDir(id), "log-driver.pid")
}

func (m *Manager) attachSocket(id string) string {
	return filepath.Join(m.stateDir(id), "attach.sock")
}

func (m *Manager) stdioFifo(id, stream string) string {
	return filepath.Join(m.stateDir(id), stream)
}

// taskStdio is how a container's task is wired.
type taskStdio struct {
	config cio.Config
}

// creator returns the cio.Creator for NewTask: the shim and the IO server
// do all the copying, nothing runs in peapod.
func (s *taskStdio) creator() cio.Creator {
	return func(string) (cio.IO, error) { return stdioConfig(s.config), nil }
}

// stdioConfig is a cio.IO that only names the task's stdio.
type stdioConfig cio.Config

func (c stdioConfig) Config() cio.Config { return cio.Config(c) }
func (stdioConfig) Cancel()              {}
func (stdioConfig) Wait()                {}
func (stdioConfig) Close() error         { return nil }

// prepareStdio sets up the stdio of container c's task before NewTask: its
// fifos, and its registration with the IO server, which must read them
// before the shim can open them. Every task of a container (a retried
// start's too) uses the same fifos, read by the same registration.
func (m *Manager) prepareStdio(ctx context.Context, c *Container) (*taskStdio, error) {
	if err := os.MkdirAll(m.stateDir(c.ID), 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory of container %s: %w", c.ID, err)
	}
	cfg := cio.Config{Terminal: c.Config.GetTty(), Stdout: m.stdioFifo(c.ID, "stdout")}
	if !cfg.Terminal {
		cfg.Stderr = m.stdioFifo(c.ID, "stderr")
	}
	if c.Config.GetStdin() {
		cfg.Stdin = m.stdioFifo(c.ID, "stdin")
	}
	for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
		if err := ensureFifo(p); err != nil {
			return nil, err
		}
	}
	spec := containerio.Spec{ID: c.ID, Log: c.LogPath, Socket: m.attachSocket(c.ID), Stdout: cfg.Stdout, Stderr: cfg.Stderr}
	if err := m.io.call(ctx, func(cl containerio.Client) error { return cl.Add(ctx, spec) }); err != nil {
		return nil, fmt.Errorf("wiring the output of container %s: %w", c.ID, err)
	}
	return &taskStdio{config: cfg}, nil
}

// ensureFifo makes a fifo at path, unless one is there (a retried start's:
// the IO server may be reading it). An empty path is none.
func ensureFifo(path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == fs.ModeNamedPipe {
		return nil
	}
	_ = os.Remove(path)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return &os.PathError{Op: "mkfifo", Path: path, Err: err}
	}
	return nil
}
