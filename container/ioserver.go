package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/containerio"
)

// ioServer starts and reaches the node's IO server (package containerio):
// one process, under peapod's state directory, that reads every
// container's output fifos. peapod starts it when it finds none answering,
// at start-up, on a request, and from a watch every ioWatchEvery, so that a
// server that died (its containers' output waiting in their fifos) is soon
// replaced; the new one takes up every registered container.
//
// Started by peapod, it begins in peapod's cgroup, where stopping peapod
// would end it too: systemd's KillMode=control-group kills a service's
// whole cgroup. So it moves to a cgroup of its own (ioServerCgroup) in
// every hierarchy, and outlives peapod there. (A peapod in a container of
// its own still takes its PID namespace's processes with it when it ends:
// run it with the host's.)
type ioServer struct {
	binary string
	client containerio.Client
	mu     sync.Mutex // serializes starts
}

// ioServerCgroup is the IO server's cgroup, in every hierarchy.
const ioServerCgroup = "/peapod-io"

// ioWatchEvery is how often a watch checks that the IO server answers.
const ioWatchEvery = 2 * time.Second

// ioReadyTimeout bounds the wait for a started IO server to serve.
const ioReadyTimeout = 10 * time.Second

func newIOServer(binary, stateDir string) *ioServer {
	return &ioServer{binary: binary, client: containerio.Client{Dir: filepath.Join(stateDir, "io")}}
}

// call runs fn with the server's client, first starting the server if fn
// finds it down.
func (s *ioServer) call(ctx context.Context, fn func(containerio.Client) error) error {
	err := fn(s.client)
	if !errors.Is(err, containerio.ErrServerDown) {
		return err
	}
	if err := s.ensure(ctx); err != nil {
		return err
	}
	return fn(s.client)
}

// ensure starts the server unless one answers.
func (s *ioServer) ensure(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.client.Ping(ctx)
	if !errors.Is(err, containerio.ErrServerDown) {
		return err
	}
	if err := s.start(); err != nil {
		// Another may have won a race to start (it holds the lock).
		if s.client.Ping(ctx) == nil {
			return nil
		}
		return fmt.Errorf("starting the IO server: %w", err)
	}
	return nil
}

// start runs the server, detached, and returns once it serves.
func (s *ioServer) start() error {
	dir := s.client.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(s.binary, append(containerio.ServerArgs(dir), "--ready-fd", "3")...)
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return err
	}
	pid := cmd.Process.Pid
	go func() {
		err := cmd.Wait()
		klog.InfoS("The IO server ended", "pid", pid, "status", err, "log", logPath)
	}()
	if err := moveToCgroup(pid, ioServerCgroup); err != nil {
		// It still serves; only a stop of peapod's whole cgroup would end it.
		klog.ErrorS(err, "Moving the IO server out of peapod's cgroup", "pid", pid)
	}
	ready := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		if n, _ := r.Read(b); n != 1 {
			ready <- fmt.Errorf("it exited before serving (see %s)", logPath)
			return
		}
		ready <- nil
	}()
	select {
	case err = <-ready:
	case <-time.After(ioReadyTimeout):
		err = fmt.Errorf("not serving after %s", ioReadyTimeout)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	klog.InfoS("Started the IO server", "pid", pid, "dir", dir)
	return nil
}

// watch keeps the server running until ctx ends.
func (s *ioServer) watch(ctx context.Context) {
	t := time.NewTicker(ioWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.ensure(ctx); err != nil {
				klog.ErrorS(err, "The IO server is down; containers' output waits in their fifos")
			}
		}
	}
}

// cgroupDirs returns the directories of cgroup rel in every cgroup
// hierarchy mounted (v1 controllers, v1 named, v2), except cpuset, whose
// new cgroups take no process before their CPUs and memory nodes are set.
func cgroupDirs(rel string) ([]string, error) {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	var dirs []string
	for _, m := range mounts {
		if m.FSType == "cgroup" && slices.Contains(strings.Split(m.VFSOptions, ","), "cpuset") {
			continue
		}
		dirs = append(dirs, filepath.Join(m.Mountpoint, filepath.Clean("/"+rel)))
	}
	return dirs, nil
}

// moveToCgroup creates cgroup rel in every hierarchy and moves pid into it.
func moveToCgroup(pid int, rel string) error {
	dirs, err := cgroupDirs(rel)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("moving %d into %s: %w", pid, d, err))
		}
	}
	return errors.Join(errs...)
}
