package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/eventbus"
	"github.com/peapod-cri/peapod/metrics"
	"github.com/peapod-cri/peapod/shimreaper"
)

// pauseStopTimeout bounds the wait for a killed pause container to exit.
const pauseStopTimeout = 30 * time.Second

// Stop stops a sandbox: its pause container is killed and its network torn
// down (CNI DEL, netns removed). Its containers must have been stopped by the
// caller. Stopping a sandbox that is stopped or unknown succeeds.
func (m *Manager) Stop(ctx context.Context, id string) error {
	sb, unlock, err := m.locked(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	if sb.Stopped {
		return nil // the kubelet stops a stopped pod again at each of its clean-ups
	}
	if err := m.stop(ctx, &sb); err != nil {
		return err
	}
	wasReady := false
	updated, ok := m.index.Update(sb.ID, func(r *Sandbox) {
		wasReady = r.State == StateReady // the pause exit may have been seen already
		r.State, r.Pid, r.Network, r.Stopped = StateNotReady, 0, "", true
	})
	if !ok {
		return nil
	}
	if wasReady {
		m.publish(sb.ID, eventbus.Stopped)
	}
	if err := m.persistStatus(ctx, updated.ID); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// Retire marks a sandbox as going away, before StopPodSandbox or
// RemovePodSandbox lists its containers: from then on no container can be
// created in it (see ForCreate), and every container whose creation began
// before is in the list. An unknown sandbox is not an error.
func (m *Manager) Retire(ctx context.Context, id string) error {
	sb, unlock, err := m.locked(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	m.index.Update(sb.ID, func(r *Sandbox) { r.Retiring = true })
	return nil
}

// ForCreate returns a ready sandbox to create a container in, with its
// lifecycle lock held until the caller has indexed the container (or
// given up), so that a Stop or Remove cannot list the sandbox's
// containers in between.
func (m *Manager) ForCreate(ctx context.Context, id string) (Sandbox, func(), error) {
	sb, unlock, err := m.locked(ctx, id)
	if err != nil {
		return Sandbox{}, nil, err
	}
	switch {
	case sb.Retiring:
		err = fmt.Errorf("pod sandbox %s is being stopped or removed: %w", sb.ID, errdefs.ErrFailedPrecondition)
	case sb.State != StateReady:
		err = fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		unlock()
		return Sandbox{}, nil, err
	}
	return sb, unlock, nil
}

// locked returns the sandbox with the given ID or unique ID prefix with its
// lifecycle lock held, and the function that releases the lock.
func (m *Manager) locked(_ context.Context, id string) (Sandbox, func(), error) {
	return m.index.GetLocked(id)
}

// stop kills the pause task and releases what the sandbox holds outside
// containerd (network, netns, shm); each step tolerates what is already gone.
func (m *Manager) stop(ctx context.Context, sb *Sandbox) error {
	// The network is torn down while the pause dies: the namespace is
	// pinned, so CNI finds it either way.
	var network errgroup.Group
	if sb.NetNS != "" {
		network.Go(func() error {
			defer metrics.Phase(opStop, "cni")()
			if err := m.network.Teardown(ctx, m.podNetwork(sb), sb.Network); err != nil {
				return fmt.Errorf("tearing down network of sandbox %s: %w", sb.ID, err)
			}
			return nil
		})
	}
	done := metrics.Phase(opStop, "task_delete")
	err := m.deleteTask(ctx, sb.ID)
	done()
	if nerr := network.Wait(); err == nil {
		err = nerr
	}
	if err != nil {
		return err
	}
	if sb.NetNS != "" {
		done = metrics.Phase(opStop, "netns")
		err = removeNetNS(sb.NetNS)
		done()
		if err != nil {
			return fmt.Errorf("removing network namespace of sandbox %s: %w", sb.ID, err)
		}
	}
	defer metrics.Phase(opStop, "unmount")()
	return m.unmountState(sb)
}

// opStop and opRemove name the phases of StopPodSandbox and
// RemovePodSandbox in the metrics.
const (
	opStop   = "sandbox_stop"
	opRemove = "sandbox_remove"
)

// Remove removes a sandbox, stopping it first if needed. Its containers must
// have been removed by the caller. Removing an unknown sandbox succeeds.
func (m *Manager) Remove(ctx context.Context, id string) error {
	sb, unlock, err := m.locked(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.cleanup(ctx, &sb); err != nil {
		return err
	}
	m.index.Delete(sb.ID)
	m.publish(sb.ID, eventbus.Deleted)
	return nil
}

// cleanup undoes everything a sandbox is: it is the rollback of Run, the
// recovery of an interrupted Run, and the body of Remove.
func (m *Manager) cleanup(ctx context.Context, sb *Sandbox) error {
	if !sb.Stopped {
		if err := m.stop(ctx, sb); err != nil {
			return err
		}
	}
	done := metrics.Phase(opRemove, "container_delete")
	ctr, err := m.client.LoadContainer(ctx, sb.ID)
	if err == nil {
		err = ctr.Delete(ctx, client.WithSnapshotCleanup)
	}
	done()
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting pause container of sandbox %s: %w", sb.ID, err)
	}
	done = metrics.Phase(opRemove, "shim_group")
	err = m.unregisterShimGroup(ctx, sb.ID)
	done()
	if err != nil {
		return err
	}
	defer metrics.Phase(opRemove, "files")()
	return m.removeFiles(sb)
}

// deleteTask kills the pause container's task and deletes it.
func (m *Manager) deleteTask(ctx context.Context, id string) error {
	ctr, err := m.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		if err := shimreaper.DeleteTask(ctx, m.client.TaskService(), id); err != nil {
			return fmt.Errorf("deleting pause task of sandbox %s: %w", id, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading pause task of sandbox %s: %w", id, err)
	}
	wait, err := task.Wait(ctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("waiting on pause task of sandbox %s: %w", id, err)
	}
	if err == nil {
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("killing pause container of sandbox %s: %w", id, err)
		}
		select {
		case <-wait:
		case <-time.After(pauseStopTimeout):
			return fmt.Errorf("pause container of sandbox %s did not exit within %s after SIGKILL", id, pauseStopTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_, err = task.Delete(ctx, client.WithProcessKill)
	if err = shimreaper.DeleteClosed(ctx, m.client.TaskService(), id, err); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting pause task of sandbox %s: %w", id, err)
	}
	return nil
}

func (m *Manager) removeFiles(sb *Sandbox) error {
	var errs []error
	for _, dir := range []string{m.rootDir(sb.ID), m.stateDir(sb.ID)} {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		klog.ErrorS(err, "Removing sandbox files", "id", sb.ID)
		return fmt.Errorf("removing files of sandbox %s: %w", sb.ID, err)
	}
	return nil
}
