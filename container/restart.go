package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/containerio"
	"github.com/peapod-cri/peapod/eventbus"
	"github.com/peapod-cri/peapod/shimreaper"
)

// Recover rebuilds the index from containerd at start-up, before the CRI is
// served, and settles what a crash left: execs (see OpenLeftExecs), exits that happened while peapod
// was down, starts it cut short (see finishStart), tasks of exited
// containers, image volumes of containers never made, checkpoints cut
// short. It may be called again after an error, and is, until it succeeds.
func (m *Manager) Recover(ctx context.Context) error {
	ctrs, err := m.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q==%s", kindLabel, kindContainer))
	if err != nil {
		return fmt.Errorf("listing containers in containerd: %w", err)
	}
	for _, cc := range ctrs {
		c, err := decode(cc)
		if err != nil {
			klog.ErrorS(err, "Ignoring unreadable container", "id", cc.ID)
			continue
		}
		if _, err := m.index.Get(c.ID); err == nil {
			continue // recovered by an earlier attempt, and current since
		}
		m.index.Add(c)
	}
	m.endLeftExecs(ctx)
	err = errors.Join(m.recoverIO(ctx), m.resync(ctx), m.recoverImageVolumes(ctx), m.recoverCheckpoints())
	if err != nil {
		return err
	}
	m.watchIO.Do(func() { go m.io.watch(context.WithoutCancel(ctx)) })
	klog.V(2).InfoS("Loaded containers", "count", len(ctrs))
	return nil
}

// recoverIO makes sure the IO server runs and serves exactly the
// containers peapod has: it forgets those removed while it could not be
// told, and takes up those whose task may still write to its fifos but
// which it does not serve (its registration was lost; containers from
// before the server, with an IO process of their own, are left to it).
func (m *Manager) recoverIO(ctx context.Context) error {
	if err := m.io.ensure(ctx); err != nil {
		return err
	}
	ids, err := m.io.client.List(ctx)
	if err != nil {
		return fmt.Errorf("listing the IO server's containers: %w", err)
	}
	served := map[string]bool{}
	var errs []error
	for _, id := range ids {
		served[id] = true
		if c, err := m.index.Get(id); err != nil || c.ID != id {
			klog.InfoS("Removing a removed container from the IO server", "id", id)
			errs = append(errs, m.io.client.Remove(ctx, id))
		}
	}
	for _, c := range m.index.List() {
		if served[c.ID] || c.State == StateExited || containerio.Running(m.pidFile(c.ID)) {
			continue
		}
		if _, err := os.Stat(m.stdioFifo(c.ID, "stdout")); err != nil {
			continue // no task was made, or it has an IO process of its own
		}
		klog.InfoS("Registering a container's output with the IO server again", "id", c.ID)
		if _, err := m.prepareStdio(ctx, &c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// finishStart settles a container recorded as created that has a task:
// peapod died inside StartContainer, after creating the task (see
// settleTask). One never started is deleted now, as containerd's CRI
// deletes it at its start, for the container's next StartContainer to make
// its own (after letGo: containerd 1.6's clean-up after the old task's
// shim runs late and by ID). One that was started is adopted.
func (m *Manager) finishStart(ctx context.Context, c Container, p *tasktypes.Process) {
	unlock := m.index.Lock(c.ID)
	defer unlock()
	if cur, err := m.index.Get(c.ID); err != nil || cur.State != StateCreated {
		return
	}
	if _, err := m.settleTask(ctx, c.ID, p); err != nil {
		klog.ErrorS(err, "Settling the task of a container whose start was interrupted", "id", c.ID)
	}
}

// settleTask carries on with the task p that a Start cut short (by a crash
// of peapod, or a break of containerd) left to created container id, as
// that Start would have; the caller holds the container's lock. A task
// never started is deleted, for a new task to be made (after letGo), as
// containerd's CRI makes a new task for every start: whether its output is
// copied cannot be told. A shim whose create containerd's restart cut off
// (the request's context ended with the connection) may hold a created
// task whose output it no longer copies; started, its container died of
// SIGPIPE at its first write (TestChaos met it on containerd 1.6). A task
// that was started is adopted: the container is running (or has exited
// since), and watched. One whose state containerd cannot tell (UNKNOWN) is
// left as it is, Unavailable: a later Start settles it. It reports whether
// the start is settled (adopted).
func (m *Manager) settleTask(ctx context.Context, id string, p *tasktypes.Process) (bool, error) {
	if p.GetStatus() == tasktypes.Status_UNKNOWN {
		// containerd 1.6 answers UNKNOWN for a task whose shim did not
		// answer in time: whether it started cannot be told yet.
		return false, fmt.Errorf("the task of container %s: its state cannot be told now (its shim does not answer): %w", id, errdefs.ErrUnavailable)
	}
	if p.GetStatus() == tasktypes.Status_CREATED {
		klog.InfoS("Deleting the unstarted task of a container whose start was interrupted", "id", id, "pid", p.GetPid())
		// Killed first, as containerd's CRI does: the shim's delete waits
		// (10 s on containerd 2.x) for the output of a process that runs.
		ts := m.client.TaskService()
		if _, err := ts.Kill(ctx, &tasks.KillRequest{ContainerID: id, Signal: uint32(unix.SIGKILL)}); err != nil {
			klog.V(2).InfoS("Killing the unstarted task", "id", id, "err", err)
		}
		if err := shimreaper.DeleteTask(ctx, ts, id); err != nil {
			return false, fmt.Errorf("deleting the unstarted task of container %s: %w", id, err)
		}
		return false, nil
	}
	klog.InfoS("Adopting a container whose start was interrupted", "id", id, "pid", p.GetPid(), "status", p.GetStatus())
	m.endStartAttempt(id)
	pid := p.GetPid()
	startedAt, pidStart := processStart(pid), procStartTicks(pid)
	started, _ := m.index.Update(id, func(r *Container) {
		r.State, r.StartedAt, r.Pid, r.PidStart = StateRunning, startedAt, pid, pidStart
	})
	m.publish(&started, eventbus.Started)
	if err := m.persistStatus(ctx, id); err != nil {
		klog.ErrorS(err, "Persisting an adopted container", "id", id)
	}
	if p.GetStatus() == tasktypes.Status_STOPPED {
		m.recordExit(ctx, id, int32(p.GetExitStatus()), p.GetExitedAt().AsTime())
		m.releaseTask(ctx, id) // the caller holds the lock
		return true, nil
	}
	m.rewatch(ctx, id)
	return true, nil
}

// letGo makes containerd let go of an earlier task of container id that
// has no process to show, and waits until it has, before a new task of the
// ID is made. Such a task is a shim that containerd holds with no task
// (containerd 1.6 lists every shim it finds when it starts, whether or not
// its task was ever made, and answers a create of the ID with "already
// exists" while Get finds none; 2.x holds one a delete cut short left),
// which a delete ends. Or containerd is still cleaning up after one: its
// shim shutting down, or containerd 1.6's clean-up after a shim whose
// connection closed, which ends by removing the bundle and unlisting the ID
// (reporting a task of the ID exited, 255). A task made before that ends is
// lost, so the wait lasts as long as a shim of the ID (or its clean-up)
// runs, which containerd bounds: settleTimeout is only a backstop.
func (m *Manager) letGo(ctx context.Context, id string) error {
	if err := shimreaper.DeleteTask(ctx, m.client.TaskService(), id); err != nil {
		return fmt.Errorf("deleting the shim containerd holds for container %s: %w", id, err)
	}
	deadline := time.Now().Add(settleTimeout)
	for shimreaper.Settling("/proc", m.config.Namespace, m.config.ContainerdAddress, id) {
		if time.Now().After(deadline) {
			klog.InfoS("A shim of the container is still running; making its task anyway", "id", id, "waited", settleTimeout)
			return nil
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// settleTimeout bounds the waits for containerd to be done with an earlier
// task of a container: its clean-up after a shim runs the shim's delete
// with a 5 s timeout.
const settleTimeout = 15 * time.Second

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// processStart is when process pid started, from its start time in clock
// ticks since boot (USER_HZ = 100 on Linux) and the boot time; now when it
// cannot be read.
func processStart(pid uint32) time.Time {
	ticks := procStartTicks(pid)
	boot, err := os.ReadFile("/proc/stat")
	if ticks == 0 || err != nil {
		return time.Now()
	}
	for _, line := range strings.Split(string(boot), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if btime, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(btime, 0).Add(time.Duration(ticks) * time.Second / 100)
			}
		}
	}
	return time.Now()
}

// procStartTicks is when process pid started, in clock ticks since boot,
// from its /proc stat; 0 when it cannot be read (the process is gone). A
// PID and its start time name one process: a PID the kernel reused names
// another with a later start.
func procStartTicks(pid uint32) uint64 {
	if pid == 0 {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return 0
	}
	ticks, _ := strconv.ParseUint(fields[19], 10, 64) // field 22: starttime
	return ticks
}

// processLives reports whether process pid, which started at start (clock
// ticks since boot, see procStartTicks), still runs; a zombie, dead but
// not yet reaped, does not. A process whose start was not recorded cannot
// be told from another of its PID: it is taken to be gone.
func processLives(pid uint32, start uint64) bool {
	if pid == 0 || start == 0 || procStartTicks(pid) != start {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
}
