package container

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/moby/sys/signal"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/containerio"
	"github.com/peapod-cri/peapod/eventbus"
	"github.com/peapod-cri/peapod/failpoint"
	"github.com/peapod-cri/peapod/image"
	"github.com/peapod-cri/peapod/metrics"
	"github.com/peapod-cri/peapod/record"
	"github.com/peapod-cri/peapod/sandbox"
	"github.com/peapod-cri/peapod/shimreaper"
)

// killTimeout bounds the wait for a SIGKILLed container to exit.
const killTimeout = 30 * time.Second

// logPath is a container's CRI log file: its log_path inside the pod's log
// directory, never outside it (the file is created as root). Empty when
// either is unset: the container then has no log.
func logPath(dir, rel string) (string, error) {
	if dir == "" || rel == "" {
		return "", nil
	}
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("pod log directory %q is not absolute: %w", dir, errdefs.ErrInvalidArgument)
	}
	p := filepath.Join(dir, rel)
	if r, err := filepath.Rel(filepath.Clean(dir), p); err != nil || r == "." || r == ".." || strings.HasPrefix(r, "../") {
		return "", fmt.Errorf("log path %q is not a file inside the pod's log directory %s: %w", rel, dir, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// Create creates a container in a sandbox, ready to start.
func (m *Manager) Create(ctx context.Context, sandboxID string, cfg *runtime.ContainerConfig) (_ string, retErr error) {
	md := cfg.GetMetadata()
	if err := validate(cfg); err != nil {
		return "", err
	}
	// The sandbox stays locked until the container is indexed (or the
	// create failed): a RemovePodSandbox then lists it, or refused it.
	sb, unlockSandbox, err := m.sandboxes.ForCreate(ctx, sandboxID)
	if err != nil {
		return "", err
	}
	defer unlockSandbox()
	// A privileged container needs a privileged pod, as containerd's CRI and
	// CRI-O require: the kubelet's pod security admission decides on the pod.
	if cfg.GetLinux().GetSecurityContext().GetPrivileged() && !sb.Config.GetLinux().GetSecurityContext().GetPrivileged() {
		return "", fmt.Errorf("container %q is privileged, its pod sandbox %s is not: %w", md.GetName(), sb.ID, errdefs.ErrInvalidArgument)
	}
	logPath, err := logPath(sb.Config.GetLogDirectory(), cfg.GetLogPath())
	if err != nil {
		return "", err
	}
	rh, err := m.config.Handlers.Get(sb.RuntimeHandler)
	if err != nil {
		return "", fmt.Errorf("runtime handler of pod sandbox %s: %w", sb.ID, err)
	}
	userns, err := sandbox.UserNSOf(sb.Config)
	if err != nil {
		return "", err
	}
	img, err := m.images.Get(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return "", err
	}
	done := metrics.Phase(opCreate, "image")
	handle, err := m.images.Handle(ctx, img)
	done()
	if err != nil {
		return "", err
	}

	id := newID()
	name := reservationName(sb.ID, md)
	if err := m.index.Reserve(name, id); err != nil {
		return "", err
	}
	defer func() {
		if retErr != nil {
			m.index.Release(name, id)
		}
	}()
	raw, err := proto.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encoding container config: %w", err)
	}
	c := &Container{Config: cfg, Record: Record{
		Metadata: Metadata{ID: id, SandboxID: sb.ID, Config: raw, ImageID: img.ID, ImageRef: cfg.GetImage().GetImage(), CreatedAt: time.Now()},
		Status:   Status{State: StateCreated},
	}}
	c.LogPath = logPath
	// The cgroup under the pod's parent (as the kubelet's cgroupfs driver
	// lays them out), else under peapod's namespace.
	if parent := sb.Config.GetLinux().GetCgroupParent(); parent != "" {
		c.CgroupsPath = filepath.Join(parent, id)
	} else {
		c.CgroupsPath = filepath.Join("/", m.config.Namespace, id)
	}
	labels := record.Labels(record.KindContainer, cfg.GetLabels(), img.Config.Labels,
		map[string]string{kindLabel: kindContainer, sandboxLabel: sb.ID})
	// The writable snapshot (and any image volume's view) exists before the
	// container that keeps it: peapod's own lease keeps it meanwhile, which
	// the next start-up ends if peapod dies here. (Without one, the
	// containerd client takes an anonymous lease that holds it for a day.)
	ctx, endLease, err := m.withLease(ctx, leaseCreate, id)
	if err != nil {
		return "", err
	}
	defer endLease()
	if slices.ContainsFunc(cfg.GetMounts(), isImageMount) {
		if c.ImageVolumes, err = m.prepareImageVolumes(ctx, id, cfg.GetMounts()); err != nil {
			return "", err
		}
		defer func() {
			if retErr != nil {
				if err := m.releaseImageVolumes(context.WithoutCancel(ctx), id, c.ImageVolumes); err != nil {
					klog.ErrorS(err, "Undoing the image volumes of a failed creation", "id", id)
				}
			}
		}()
		for _, v := range c.ImageVolumes {
			labels[imageVolumeRefLabel(v.Mount)] = v.Snapshot
		}
		failpoint.Hit("container-create:after-image-volumes")
	}
	done = metrics.Phase(opCreate, "spec")
	specOpts, err := m.specOpts(ctx, c, &sb, img, rh)
	done()
	if err != nil {
		return "", err
	}
	ctrOpts := []client.NewContainerOpts{
		client.WithContainerLabels(labels),
		rh.ContainerOpt(),
		client.WithSnapshotter(image.Snapshotter),
		client.WithNewSnapshot(id, handle, userns.SnapshotOpts()...),
		client.WithImageName(img.References[0]),
		client.WithNewSpec(specOpts...),
		client.WithContainerExtension(recordExtension, &c.Metadata),
		client.WithContainerExtension(statusExtension, &c.Status),
	}
	if sb.ShimGroup {
		// Its task joins the pod's shim directly (see sandbox/shimgroup.go).
		ctrOpts = append(ctrOpts, client.WithSandbox(sb.ID))
	}
	done = metrics.Phase(opCreate, "container_create")
	_, err = m.client.NewContainer(ctx, id, ctrOpts...)
	done()
	if err != nil {
		// The snapshot may exist without the container.
		_ = m.client.SnapshotService(image.Snapshotter).Remove(context.WithoutCancel(ctx), id)
		return "", fmt.Errorf("creating container %q in sandbox %s: %w", md.GetName(), sb.ID, err)
	}
	m.index.Add(c)
	m.publish(c, eventbus.Created)
	return id, nil
}

// Start starts a created container.
func (m *Manager) Start(ctx context.Context, id string) error {
	c, unlock, err := m.locked(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if c.State != StateCreated {
		return fmt.Errorf("container %s is %s, not created: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	ctr, err := m.client.LoadContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	if err := m.ensureImageVolumes(ctx, &c); err != nil {
		return fmt.Errorf("starting container %s: %w", c.ID, err)
	}
	// A Start cut short (by a crash of peapod, or a break of containerd)
	// may have left a task: carry on with it (see settleTask). Or it left
	// containerd holding that task's shim with no task to show, or still
	// cleaning up after it: see letGo.
	if m.startAttempted(c.ID) {
		if settled, err := m.settleLeftTask(ctx, c.ID); err != nil || settled {
			return err
		}
		if err := m.letGo(ctx, c.ID); err != nil {
			return err
		}
	}
	if err := m.markStartAttempt(c.ID); err != nil {
		return err
	}
	// Each failed create met something left of an earlier task of the
	// container, and settles it, or waits for containerd to; settling
	// takes no longer than containerd's own clean-up, which settleTimeout
	// only backs.
	deadline := time.Now().Add(settleTimeout)
	for {
		done := metrics.Phase(opStart, "stdio")
		stdio, err := m.prepareStdio(ctx, &c)
		done()
		if err != nil {
			return err
		}
		failpoint.Hit("container-start:before-task")
		done = metrics.Phase(opStart, "task_create")
		task, err := ctr.NewTask(ctx, stdio.creator())
		done()
		if err == nil {
			return m.startTask(ctx, c.ID, task)
		}
		if time.Now().After(deadline) {
			return m.startFailed(ctx, c.ID, err, nil)
		}
		switch {
		case errdefs.IsAlreadyExists(err):
			// containerd lists a task of the ID. One with a process is
			// that of a Start cut short: carry on with it. One without is
			// a shim containerd holds with no task to show (containerd
			// 1.6 lists every shim it finds at its start, whether or not
			// its task was ever made; 2.x keeps one a delete cut short
			// left): let it go.
			klog.V(2).InfoS("Task create met an earlier task of the container", "id", c.ID, "err", err)
			if settled, serr := m.settleLeftTask(ctx, c.ID); serr != nil || settled {
				return serr
			}
			err = m.letGo(ctx, c.ID)
		case bundleRace(c.ID, err):
			// containerd is still making or removing the bundle of an
			// earlier task of the ID (its clean-up runs processes in
			// turn, with moments between them when none runs): try
			// again shortly, until the bundle is gone.
			klog.V(2).InfoS("Task create met the bundle of an earlier task of the container", "id", c.ID, "err", err)
			bundle := orphanBundlePath(m.config.Namespace, c.ID, err)
			if err = m.letGo(ctx, c.ID); err == nil && bundle != "" {
				_, err = m.removeOrphanBundle(ctx, c.ID, bundle)
			}
		case runtimeOrphan(err):
			err = m.deleteRuntimeOrphan(ctx, &c)
		default:
			return m.startFailed(ctx, c.ID, err, nil)
		}
		if err != nil {
			return fmt.Errorf("starting container %s: %w", c.ID, err)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// startTask starts task, made for created container id by this Start or
// by one cut short, and records the container running and watches it. The
// caller holds the container's lock.
func (m *Manager) startTask(ctx context.Context, id string, task client.Task) error {
	// Wait before Start: a container that exits at once must not be missed.
	exited, err := task.Wait(context.WithoutCancel(ctx))
	if err == nil {
		failpoint.Hit("container-start:after-task")
		done := metrics.Phase(opStart, "task_start")
		err = task.Start(ctx)
		done()
	}
	if err != nil {
		return m.startFailed(ctx, id, err, task)
	}
	failpoint.Hit("container-start:after-start")
	m.endStartAttempt(id)
	m.layerUsage(id, time.Now()) // a first measure, in the background
	pid := task.Pid()
	pidStart := procStartTicks(pid)
	started, _ := m.index.Update(id, func(r *Container) {
		r.State, r.StartedAt, r.Pid, r.PidStart = StateRunning, time.Now(), pid, pidStart
	})
	m.publish(&started, eventbus.Started)
	m.watching.Store(id, true)
	go func() {
		defer m.watching.Delete(id)
		m.watchExit(context.WithoutCancel(ctx), id, exited)
	}()
	// The status is written before the Start answers, as containerd's CRI
	// writes it: a peapod that died after answering would otherwise adopt
	// the container with the start time of its process (see settleTask),
	// not the one the kubelet was told. Should the write fail, the
	// container runs all the same and recovery adopts it.
	recorded := metrics.Phase(opStart, "record_write")
	if err := m.persistStatus(context.WithoutCancel(ctx), id); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Persisting a started container", "id", id)
	}
	recorded()
	return nil
}

// opCreate and opStart name the phases of CreateContainer and
// StartContainer in the metrics.
const (
	opCreate = "container_create"
	opStart  = "container_start"
)

// startFailed settles a Start of container id that failed with err, after
// task was made if it is not nil. When containerd went away mid-call,
// whether the task was made, or even started, is unknown: the container
// stays created, with its task and that task's IO, for a retried Start
// (or the resync that follows containerd's return) to carry on with. Any
// other failure leaves the container exited with the start error, its
// task deleted.
func (m *Manager) startFailed(ctx context.Context, id string, err error, task client.Task) error {
	if errdefs.IsUnavailable(err) || errdefs.IsCanceled(err) || errdefs.IsDeadlineExceeded(err) {
		return fmt.Errorf("starting container %s: %v: %w", id, err, errdefs.ErrUnavailable)
	}
	if task != nil {
		_, _ = task.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
	}
	m.endStartAttempt(id)
	failed, _ := m.index.Update(id, func(r *Container) {
		r.State, r.ExitCode, r.Reason, r.Message = StateExited, 128, ReasonStartError, err.Error()
		r.StartedAt, r.FinishedAt = time.Now(), time.Now()
	})
	if perr := m.persistStatus(ctx, id); perr != nil {
		klog.ErrorS(perr, "Persisting start failure", "id", id)
	}
	m.publish(&failed, eventbus.Stopped)
	return fmt.Errorf("starting container %s: %w", id, err)
}

// A start attempt is marked by a file in the container's state directory
// from before its task create until the start succeeded or failed for
// good: one found by a Start was cut short.
func (m *Manager) startAttemptFile(id string) string {
	return filepath.Join(m.stateDir(id), "start-attempt")
}

func (m *Manager) startAttempted(id string) bool {
	_, err := os.Stat(m.startAttemptFile(id))
	return err == nil
}

func (m *Manager) markStartAttempt(id string) error {
	if err := os.MkdirAll(m.stateDir(id), 0o700); err != nil {
		return fmt.Errorf("marking the start of container %s: %w", id, err)
	}
	if err := os.WriteFile(m.startAttemptFile(id), nil, 0o600); err != nil {
		return fmt.Errorf("marking the start of container %s: %w", id, err)
	}
	return nil
}

func (m *Manager) endStartAttempt(id string) {
	if err := os.Remove(m.startAttemptFile(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		klog.ErrorS(err, "Removing the start mark of a container", "id", id)
	}
}

// bundleRace reports whether a task create of container id failed on the
// bundle of an earlier task of the ID that containerd is still making or
// removing: the bundle is in the way ("file exists"), or it was removed
// under this create ("getwd", or a path under the bundle, which is named
// by the container's ID, is missing, or the rootfs the shim mounts in it):
// containerd 1.6 ends its clean-up after a shim, or after a create that
// failed, by removing the bundle directory, which by then may be this
// create's.
func bundleRace(id string, err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "file exists") ||
		strings.Contains(msg, "failed to mount rootfs") && strings.Contains(msg, "no such file or directory") ||
		strings.Contains(msg, "getwd: no such file or directory") ||
		strings.Contains(msg, "/"+id+"/") && strings.Contains(msg, "no such file or directory")
}

// watchExit records the container's exit when its task's wait returns.
func (m *Manager) watchExit(ctx context.Context, id string, exited <-chan client.ExitStatus) {
	st, ok := <-exited
	if !ok || st.Error() != nil {
		return // the wait broke (containerd restarted): events and Resync take over
	}
	if m.recordExit(ctx, id, int32(st.ExitCode()), st.ExitTime()) {
		m.releaseTaskLater(ctx, id)
	}
}

// Stop stops a running container: its stop signal, then SIGKILL after
// timeout. Stopping a container that is not running, or unknown, succeeds.
func (m *Manager) Stop(ctx context.Context, id string, timeout time.Duration) error {
	c, err := m.Get(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	unlock := m.index.Lock(c.ID)
	defer unlock()
	return m.stop(ctx, c.ID, timeout)
}

// settleLeftTask settles (see settleTask) the task a Start cut short left
// to created container id, if containerd shows one; it reports whether
// that settled the start (the container then runs, or has exited).
func (m *Manager) settleLeftTask(ctx context.Context, id string) (bool, error) {
	resp, err := m.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err = errgrpc.ToNative(err); errdefs.IsNotFound(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("looking for the task of container %s: %w", id, err)
	}
	return m.settleTask(ctx, id, resp.GetProcess())
}

// stopped records the exit a stop waited for, and releases the task. A wait
// that broke (containerd restarted) says nothing of the container, whose
// exit code would be the client's 255: the stop is then Unavailable, to be
// retried, and the exit is recorded from the task once containerd is back.
func (m *Manager) stopped(ctx context.Context, id string, st client.ExitStatus) error {
	if err := st.Error(); err != nil {
		return fmt.Errorf("waiting for container %s to stop: %v: %w", id, err, errdefs.ErrUnavailable)
	}
	m.recordExit(ctx, id, int32(st.ExitCode()), st.ExitTime())
	m.releaseTask(ctx, id)
	return nil
}

func (m *Manager) stop(ctx context.Context, id string, timeout time.Duration) error {
	c, err := m.index.Get(id)
	if err == nil && c.State == StateExited && c.Draining {
		// Exited, its task not yet released (releaseTaskLater waits for
		// this lock): release it now, so that the stop reports the exit.
		m.releaseTask(ctx, id)
		return nil
	}
	if err != nil || c.State != StateRunning {
		return nil
	}
	ctr, err := m.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return m.stopLost(ctx, &c, timeout)
	}
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return m.stopLost(ctx, &c, timeout)
	}
	if err != nil {
		return fmt.Errorf("loading task of container %s: %w", id, err)
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("waiting on container %s: %w", id, err)
	}
	// A frozen process acts on no signal, not even SIGKILL.
	if st, err := task.Status(ctx); err == nil && st.Status == client.Paused {
		klog.InfoS("Resuming a paused container to stop it", "id", id)
		if err := task.Resume(ctx); err != nil {
			klog.ErrorS(err, "Resuming a paused container to stop it", "id", id)
		}
	}
	if timeout > 0 {
		sig := m.stopSignal(ctx, &c)
		if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("signalling container %s: %w", id, err)
		}
		select {
		case st := <-exited:
			return m.stopped(ctx, id, st)
		case <-time.After(timeout):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("killing container %s: %w", id, err)
	}
	select {
	case st := <-exited:
		return m.stopped(ctx, id, st)
	case <-time.After(killTimeout):
		return fmt.Errorf("container %s did not exit within %s of SIGKILL", id, killTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopSignal is the CRI config's stop signal, else the image's, else SIGTERM.
func (m *Manager) stopSignal(ctx context.Context, c *Container) syscall.Signal {
	if s := c.Config.GetStopSignal(); s != runtime.Signal_SIGNAL_RUNTIME_DEFAULT {
		if sig, err := signal.ParseSignal(strings.TrimPrefix(s.String(), "SIGNAL_")); err == nil {
			return sig
		}
	}
	if img, err := m.images.Get(ctx, c.ImageID); err == nil && img.Config.StopSignal != "" {
		if sig, err := signal.ParseSignal(img.Config.StopSignal); err == nil {
			return sig
		}
	}
	return syscall.SIGTERM
}

// Remove removes a container, killing it first if it runs. Removing an
// unknown container succeeds.
func (m *Manager) Remove(ctx context.Context, id string) error {
	c, err := m.Get(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	unlock := m.index.Lock(c.ID)
	defer unlock()
	if err := m.stop(ctx, c.ID, 0); err != nil {
		return err
	}
	ctr, err := m.client.LoadContainer(ctx, c.ID)
	switch {
	case errdefs.IsNotFound(err):
		ctr = nil
	case err != nil:
		return fmt.Errorf("loading container %s: %w", c.ID, err)
	default:
		task, terr := ctr.Task(ctx, nil)
		if terr == nil {
			_, terr = task.Delete(ctx, client.WithProcessKill)
			terr = shimreaper.DeleteClosed(ctx, m.client.TaskService(), c.ID, terr)
		} else if errdefs.IsNotFound(terr) {
			terr = shimreaper.DeleteTask(ctx, m.client.TaskService(), c.ID)
			m.releaseLost(ctx, c.ID)
			if oerr := m.deleteRuntimeOrphan(ctx, &c); oerr != nil {
				klog.ErrorS(oerr, "Deleting what a task create cut short left in the OCI runtime", "id", c.ID)
			}
		}
		if terr != nil && !errdefs.IsNotFound(terr) {
			return fmt.Errorf("deleting task of container %s: %w", c.ID, terr)
		}
	}
	// The image volumes before the container: once it is gone, only a
	// restart's sweep would find them.
	if err := m.releaseImageVolumes(ctx, c.ID, c.ImageVolumes); err != nil {
		return fmt.Errorf("removing the image volumes of container %s: %w", c.ID, err)
	}
	if ctr != nil {
		if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("deleting container %s: %w", c.ID, err)
		}
	}
	// A registration left behind (the IO server could not be reached) is
	// dropped by the next start-up's recoverIO.
	if err := m.io.call(ctx, func(cl containerio.Client) error { return cl.Remove(ctx, c.ID) }); err != nil {
		klog.ErrorS(err, "Removing a container from the IO server", "id", c.ID)
	}
	_ = os.RemoveAll(m.stateDir(c.ID))
	m.stats.forget(c.ID)
	m.index.Delete(c.ID)
	m.publish(&c, eventbus.Deleted)
	return nil
}
