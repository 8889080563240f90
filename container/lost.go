package container

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/shimreaper"
)

// containerd can lose a task while its process runs: containerd 1.6's
// clean-up after an earlier task of the same ID, cut short, unlists the ID
// (see shimreaper.LostTask). containerd then answers NotFound for the
// task, which says nothing of the container's process: peapod checks that
// process itself (its PID and start time), and while it lives, asks the
// task's shim, which still runs it and knows its exit, or, with no shim
// left, the OCI runtime. A process that ended meanwhile has its exit
// asked of the shim too, which keeps it until the task is deleted. Only a
// container whose process is gone, and whose exit no shim holds, is taken
// to have exited unseen, with the unknown status 255.

// lostTask returns the shim of container c's task, which containerd does
// not list, when one holds the task: c's process runs, or has exited and
// the shim holds its exit. It returns nil when c's process is gone and no
// shim holds its task. A process no shim runs any more is ended through
// the OCI runtime (and nil returned): nothing could report its exit.
func (m *Manager) lostTask(ctx context.Context, c *Container) (*shimreaper.LostTask, error) {
	lives := processLives(c.Pid, c.PidStart)
	lt, err := shimreaper.FindLostTask(ctx, "/proc", m.config.Namespace, m.config.ContainerdAddress, c.ID)
	if err == nil {
		klog.InfoS("containerd lost the task of a container; its shim still holds it", "id", c.ID, "pid", c.Pid, "running", lives, "shim", lt.PID)
		return lt, nil
	}
	if !lives {
		if !errdefs.IsNotFound(err) {
			klog.InfoS("Looking for the shim of an ended container's task, which containerd lost", "id", c.ID, "err", err)
		}
		return nil, nil
	}
	if !errdefs.IsNotFound(err) {
		return nil, err
	}
	klog.InfoS("containerd lost the task of a running container, and no shim runs it; ending it through the OCI runtime", "id", c.ID, "pid", c.Pid)
	return nil, m.killThroughRuntime(ctx, c)
}

// stopLost stops container c, recorded running, whose task containerd
// does not list (see lostTask). The caller holds the container's lock.
func (m *Manager) stopLost(ctx context.Context, c *Container, timeout time.Duration) error {
	lt, err := m.lostTask(ctx, c)
	if err != nil {
		return fmt.Errorf("stopping container %s, whose task containerd lost: %w", c.ID, err)
	}
	if lt == nil {
		m.recordExit(ctx, c.ID, 255, time.Now())
		m.revealExit(c.ID)
		return nil
	}
	defer lt.Close()
	type exit struct {
		code uint32
		at   time.Time
		err  error
	}
	waitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout+killTimeout)
	defer cancel()
	exited := make(chan exit, 1)
	go func() {
		code, at, err := waitLost(waitCtx, lt, c)
		exited <- exit{code, at, err}
	}()
	var st exit
	select {
	case st = <-exited:
	default:
		signals := []syscall.Signal{syscall.SIGKILL}
		if timeout > 0 {
			signals = []syscall.Signal{m.stopSignal(ctx, c), syscall.SIGKILL}
		}
	signalling:
		for i, sig := range signals {
			if err := lt.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("signalling container %s through its shim: %w", c.ID, err)
			}
			wait := killTimeout
			if i < len(signals)-1 {
				wait = timeout
			}
			select {
			case st = <-exited:
				break signalling
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if st.err != nil {
		return fmt.Errorf("waiting for container %s through its shim: %w", c.ID, st.err)
	}
	m.recordExit(ctx, c.ID, int32(st.code), st.at)
	if err := lt.Release(ctx); err != nil {
		klog.ErrorS(err, "Releasing the lost task of a stopped container", "id", c.ID)
	}
	m.revealExit(c.ID)
	return nil
}

// waitLost waits for the exit of container c through the shim of its
// lost task. A shim that cannot tell it fails the wait while c's process
// lives; once the process is gone, its exit is the unknown 255.
func waitLost(ctx context.Context, lt *shimreaper.LostTask, c *Container) (uint32, time.Time, error) {
	code, at, err := lt.Wait(ctx)
	if err == nil || processLives(c.Pid, c.PidStart) {
		return code, at, err
	}
	klog.InfoS("The shim of a lost task cannot tell the exit of its ended process", "id", c.ID, "err", err)
	return 255, time.Now(), nil
}

// watchLost follows the exit of running container c, whose task containerd
// does not list, through the task's shim (see lostTask); a container whose
// process is gone, and whose exit no shim holds, has it recorded now, as
// 255.
func (m *Manager) watchLost(ctx context.Context, c Container) {
	if _, loaded := m.watching.LoadOrStore(c.ID, true); loaded {
		return
	}
	lt, err := m.lostTask(ctx, &c)
	if err != nil || lt == nil {
		m.watching.Delete(c.ID)
		if err != nil {
			klog.ErrorS(err, "Following a container whose task containerd lost", "id", c.ID)
		} else {
			klog.InfoS("containerd has no task of a running container, whose process is gone and whose exit no shim holds: its exit is unknown (255)", "id", c.ID, "pid", c.Pid)
			if m.recordExit(ctx, c.ID, 255, time.Now()) {
				m.revealExit(c.ID) // no task: its output is ending, if not ended
			}
		}
		return
	}
	go func() {
		defer m.watching.Delete(c.ID)
		defer lt.Close()
		code, at, err := waitLost(context.WithoutCancel(ctx), lt, &c)
		if err != nil {
			klog.ErrorS(err, "Waiting for a container whose task containerd lost, through its shim", "id", c.ID)
			return
		}
		if m.recordExit(context.WithoutCancel(ctx), c.ID, int32(code), at) {
			m.releaseTaskLater(ctx, c.ID)
		}
	}()
}

// releaseLost releases the exited task of container id from a shim that
// containerd lost, if one holds it: its runtime state, root filesystem
// mount and bundle would otherwise stay.
func (m *Manager) releaseLost(ctx context.Context, id string) {
	lt, err := shimreaper.FindLostTask(ctx, "/proc", m.config.Namespace, m.config.ContainerdAddress, id)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			klog.V(2).InfoS("Looking for a shim containerd lost", "id", id, "err", err)
		}
		return
	}
	defer lt.Close()
	klog.InfoS("Releasing the task of an exited container from a shim containerd lost", "id", id, "shim", lt.PID)
	if err := lt.Release(ctx); err != nil {
		klog.ErrorS(err, "Releasing the task of an exited container from a shim containerd lost", "id", id)
	}
}

// killThroughRuntime ends the processes of container c through its OCI
// runtime, and deletes the runtime's container, for a container no shim
// runs any more. It returns once c's process is gone.
func (m *Manager) killThroughRuntime(ctx context.Context, c *Container) error {
	binary, root, err := m.ociRuntime(ctx, c)
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, binary, "--root", root, "kill", "--all", c.ID, "KILL").CombinedOutput(); err != nil {
		klog.InfoS("Killing a container through its OCI runtime", "id", c.ID, "runtime", binary, "err", err, "output", strings.TrimSpace(string(out)))
	}
	deadline := time.Now().Add(killTimeout)
	for processLives(c.Pid, c.PidStart) {
		if time.Now().After(deadline) {
			return fmt.Errorf("container %s (pid %d) did not exit within %s of SIGKILL", c.ID, c.Pid, killTimeout)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return m.deleteRuntimeOrphan(ctx, c)
}
