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
	"github.com/containerd/errdefs/pkg/errgrpc"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/containerio"
	"github.com/peapod-cri/peapod/eventbus"
)

// Recover rebuilds the index from containerd at start-up, before the CRI is
// served, and settles what a crash left: exits that happened while peapod
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
// peapod died inside StartContainer, after creating the task. One that was
// started is adopted (see settleTask). One never started is kept, with its
// IO, for the container's next StartContainer to start: deleting it for
// that Start to make another with the same ID is unsafe on containerd 1.6,
// whose clean-up after the old task's shim disconnects runs late and by ID,
// and so can unlist (and report exited) the new task.
func (m *Manager) finishStart(ctx context.Context, c Container, p *tasktypes.Process) {
	if p.GetStatus() == tasktypes.Status_CREATED {
		klog.InfoS("Keeping the task of a container whose start was interrupted, for its next start", "id", c.ID)
		return
	}
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
// never started is started now, unless its IO is gone: a fifo relay (see
// prepareStdio) that was lost with the IO server's registration. That one
// is deleted, so that
// a new task can be made, after shimSettle. A task that was started is
// adopted: the container is running (or has exited since), and watched.
// It reports whether the start is settled (started or adopted).
func (m *Manager) settleTask(ctx context.Context, id string, p *tasktypes.Process) (bool, error) {
	if p.GetStatus() == tasktypes.Status_CREATED {
		if has, err := m.hasIO(ctx, id); err != nil {
			return false, err
		} else if !has {
			klog.InfoS("Deleting the task of a container whose start was interrupted: its IO process is gone", "id", id)
			if _, err := m.client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id}); err != nil &&
				!errdefs.IsNotFound(errgrpc.ToNative(err)) {
				return false, fmt.Errorf("deleting the unstarted task of container %s: %w", id, errgrpc.ToNative(err))
			}
			return false, sleepCtx(ctx, shimSettle)
		}
		ctr, err := m.client.LoadContainer(ctx, id)
		if err != nil {
			return false, err
		}
		task, err := ctr.Task(ctx, nil)
		if err != nil {
			return false, fmt.Errorf("loading the task of container %s: %w", id, err)
		}
		klog.InfoS("Starting the task of a container whose start was interrupted", "id", id, "pid", p.GetPid())
		return true, m.startTask(ctx, id, task)
	}
	klog.InfoS("Adopting a container whose start was interrupted", "id", id, "pid", p.GetPid(), "status", p.GetStatus())
	m.endStartAttempt(id)
	started, _ := m.index.Update(id, func(r *Container) {
		r.State, r.StartedAt, r.Pid = StateRunning, processStart(p.GetPid()), p.GetPid()
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

// shimSettle is how long containerd 1.6 may take, after deleting a task, to
// finish cleaning up after its shim disconnected: that clean-up unlists the
// task by ID, so a new task of the same ID made before it ends is lost.
const shimSettle = 2 * time.Second

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// leftTask returns the task a crashed Start left to container id, if any.
// A create still under way in containerd (peapod died waiting for it) shows
// as no task but a bundle in the way: wait, up to wait, for it to appear.
func (m *Manager) leftTask(ctx context.Context, id string, wait time.Duration) (*tasktypes.Process, error) {
	deadline := time.Now().Add(wait)
	for {
		resp, err := m.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
		if err == nil {
			return resp.GetProcess(), nil
		}
		if err = errgrpc.ToNative(err); !errdefs.IsNotFound(err) {
			return nil, err
		}
		if !time.Now().Before(deadline) {
			return nil, nil
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// processStart is when process pid started, from its /proc stat (clock
// ticks since boot, USER_HZ = 100 on Linux) and the boot time; now when it
// cannot be read.
func processStart(pid uint32) time.Time {
	stat, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	boot, err2 := os.ReadFile("/proc/stat")
	if err1 != nil || err2 != nil {
		return time.Now()
	}
	// Fields after the command, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	fields := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(fields) < 20 {
		return time.Now()
	}
	ticks, err := strconv.ParseUint(fields[19], 10, 64) // field 22: starttime
	if err != nil {
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
