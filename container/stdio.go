package container

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/containerio"
)

// A container's stdio goes one of two ways, both served by an IO process
// that outlives peapod (so logs flow and attach works across its restarts):
//
//   - With a terminal, or without stdin: the shim runs peapod as a log
//     driver (a binary:// stdout URI) and hands it the output. The shim gives
//     such a container no stdin except through a terminal, so a tty
//     container with stdin also gets a stdin fifo, which the shim copies to
//     the terminal.
//   - Without a terminal but with stdin: the shim copies fifos (stdin to the
//     container, its stdout and stderr out), and peapod starts the IO
//     process itself, detached, to read the output fifos.
//
// Either way the shim holds the stdin fifo open for writing, so attach
// sessions can open and close it without the container seeing EOF; its
// stdin is closed explicitly, through the task's CloseIO.

const (
	// ioReadyTimeout bounds the wait for a started fifo relay to be ready.
	ioReadyTimeout = 10 * time.Second
)

// stateDir holds a container's runtime files: the IO process's pid file,
// the attach socket, the stdio fifos.
func (m *Manager) stateDir(id string) string { return filepath.Dir(m.pidFile(id)) }

func (m *Manager) attachSocket(id string) string {
	return filepath.Join(m.stateDir(id), "attach.sock")
}

func (m *Manager) stdioFifo(id, stream string) string {
	return filepath.Join(m.stateDir(id), stream)
}

// taskStdio is how a container's task is wired: the stdio configuration
// given to the shim, and the fifo relay peapod started, if any.
type taskStdio struct {
	config cio.Config
	relay  *os.Process
}

// creator returns the cio.Creator for NewTask: the shim does all the
// copying, nothing runs in peapod.
func (s *taskStdio) creator() cio.Creator {
	return func(string) (cio.IO, error) { return stdioConfig(s.config), nil }
}

// abort ends the fifo relay of a task that failed to start.
func (s *taskStdio) abort() {
	if s != nil && s.relay != nil {
		_ = s.relay.Kill()
	}
}

// stdioConfig is a cio.IO that only names the task's stdio.
type stdioConfig cio.Config

func (c stdioConfig) Config() cio.Config { return cio.Config(c) }
func (stdioConfig) Cancel()              {}
func (stdioConfig) Wait()                {}
func (stdioConfig) Close() error         { return nil }

// prepareStdio sets up the stdio of container c's task before NewTask.
func (m *Manager) prepareStdio(c *Container) (*taskStdio, error) {
	dir := m.stateDir(c.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory of container %s: %w", c.ID, err)
	}
	tty, stdin := c.Config.GetTty(), c.Config.GetStdin()
	opts := map[string]string{containerio.OptSocket: m.attachSocket(c.ID), containerio.OptPidFile: m.pidFile(c.ID)}
	if c.LogPath != "" {
		opts[containerio.OptLogPath] = c.LogPath
	}
	var cfg cio.Config
	if stdin {
		cfg.Stdin = m.stdioFifo(c.ID, "stdin")
		if err := mkfifo(cfg.Stdin); err != nil {
			return nil, err
		}
	}
	if tty || !stdin {
		opts[containerio.LogDriverFlag] = "1"
		uri, err := cio.LogURIGenerator("binary", m.config.IOBinary, opts)
		if err != nil {
			return nil, err
		}
		cfg.Terminal, cfg.Stdout, cfg.Stderr = tty, uri.String(), uri.String()
		return &taskStdio{config: cfg}, nil
	}
	cfg.Stdout, cfg.Stderr = m.stdioFifo(c.ID, "stdout"), m.stdioFifo(c.ID, "stderr")
	for _, p := range []string{cfg.Stdout, cfg.Stderr} {
		if err := mkfifo(p); err != nil {
			return nil, err
		}
	}
	opts[containerio.OptStdout], opts[containerio.OptStderr] = cfg.Stdout, cfg.Stderr
	relay, err := m.startRelay(c, opts)
	if err != nil {
		return nil, err
	}
	return &taskStdio{config: cfg, relay: relay}, nil
}

func mkfifo(path string) error {
	_ = os.Remove(path)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return &os.PathError{Op: "mkfifo", Path: path, Err: err}
	}
	return nil
}

// startRelay starts the fifo relay of container c, in a session and a
// cgroup of its own (see relaycgroup.go) and with no stdio of peapod's, so
// it outlives peapod; a goroutine reaps it while peapod lives. It returns once the relay listens
// on its socket and waits on the output fifos.
func (m *Manager) startRelay(c *Container, opts map[string]string) (*os.Process, error) {
	id := c.ID
	args := []string{containerio.FifoRelayArg}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		args = append(args, k, opts[k])
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(m.config.IOBinary, args...)
	cmd.ExtraFiles = []*os.File{w} // fd 3: readiness
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("starting the IO process of container %s: %w", id, err)
	}
	go func() {
		err := cmd.Wait()
		klog.V(4).InfoS("Container IO process ended", "id", id, "pid", cmd.Process.Pid, "status", err)
	}()
	if err := moveToCgroup(cmd.Process.Pid, relayCgroup(c)); err != nil {
		// It still relays; only a stop of peapod's whole cgroup would end it.
		klog.ErrorS(err, "Moving a container's IO process out of peapod's cgroup", "id", id)
	}
	ready := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		n, err := r.Read(b)
		if n == 1 {
			err = nil
		} else if err == nil {
			err = errors.New("no readiness byte")
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(ioReadyTimeout):
		err = fmt.Errorf("not ready after %s", ioReadyTimeout)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("IO process of container %s: %w", id, err)
	}
	return cmd.Process, nil
}
