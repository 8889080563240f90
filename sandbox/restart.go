package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/record"
)

// Cleanups that failed at recovery are retried with this backoff.
const (
	cleanupRetryFirst = time.Second
	cleanupRetryMax   = time.Minute
)

// Recover rebuilds the index from containerd at start-up, before the CRI is
// served: every sandbox container is loaded. One left in StateCreating was
// interrupted mid-RunPodSandbox and is cleaned up (network, netns, files,
// container), the kubelet will run it again; a cleanup that fails is retried
// in the background until it succeeds. Network namespaces pinned but never
// recorded (a crash before the container was created) are removed. It may
// be called again after an error.
func (m *Manager) Recover(ctx context.Context) error {
	ctrs, err := m.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q==%s", kindLabel, kindSandbox))
	if err != nil {
		return fmt.Errorf("listing sandboxes in containerd: %w", err)
	}
	known := map[string]bool{}
	unsure := false // an unreadable record may name any pinned netns
	for _, c := range ctrs {
		sb, err := decode(c)
		if err != nil {
			// Its pause may well run: keep its files, /dev/shm and netns.
			klog.ErrorS(err, "Ignoring unreadable sandbox container; keeping what it may use", "id", c.ID)
			known[c.ID] = true
			var rec Record
			if record.Load(c, recordExtension, &rec) == nil && rec.NetNS != "" {
				known[rec.NetNS] = true
			} else {
				unsure = true
			}
			continue
		}
		if sb.State == StateCreating {
			klog.InfoS("Cleaning up a sandbox whose creation was interrupted", "id", sb.ID)
			if err := m.cleanup(ctx, sb); err != nil {
				klog.ErrorS(err, "Cleaning up interrupted sandbox failed; retrying in the background", "id", sb.ID)
				known[sb.NetNS], known[sb.ID] = true, true
				m.retryCleanup(ctx, sb)
			}
			continue
		}
		known[sb.NetNS], known[sb.ID] = true, true
		state, pid, err := m.taskState(ctx, sb.ID, sb.State)
		if errdefs.IsUnavailable(err) && !errors.Is(err, errUnknownState) {
			return err // containerd is away: recovery is tried again
		}
		sb.State, sb.Pid = state, pid
		m.index.Add(sb)
		if err != nil {
			// containerd cannot tell of this pause now (its shim does not
			// answer in time): the pod stays as recorded, and is looked at
			// again in the background, not holding up the others.
			klog.ErrorS(err, "Reading a sandbox's pause task; asking again in the background", "id", sb.ID)
			m.recheckLater(ctx, sb.ID)
		}
	}
	m.sweepUnrecorded(known)
	m.sweepShimGroups(ctx, known)
	if unsure {
		klog.InfoS("Not removing unrecorded network namespaces: a sandbox record is unreadable and may name one")
		klog.V(2).InfoS("Loaded sandboxes", "count", len(m.index.List()))
		return nil
	}
	entries, err := os.ReadDir(m.netnsDir())
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(m.netnsDir(), e.Name())
		if !known[p] {
			klog.InfoS("Removing network namespace left by an interrupted sandbox", "path", p)
			if err := removeNetNS(p); err != nil {
				klog.ErrorS(err, "Removing leaked network namespace failed", "path", p)
			}
		}
	}
	klog.V(2).InfoS("Loaded sandboxes", "count", len(m.index.List()))
	return nil
}

// sweepUnrecorded removes the files (and /dev/shm mount) of sandboxes that
// have no record: a crash between writing them and creating the sandbox's
// container leaves them where nothing else would find them.
func (m *Manager) sweepUnrecorded(known map[string]bool) {
	for _, dir := range []string{filepath.Join(m.config.StateDir, "sandboxes"), filepath.Join(m.config.RootDir, "sandboxes")} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if known[e.Name()] {
				continue
			}
			sb := &Sandbox{Record: Record{Metadata: Metadata{ID: e.Name()}}, Config: &runtime.PodSandboxConfig{}}
			klog.InfoS("Removing files of an unrecorded sandbox", "id", sb.ID)
			if err := m.unmountState(sb); err != nil {
				klog.ErrorS(err, "Unmounting leaked /dev/shm", "id", sb.ID)
				continue
			}
			_ = m.removeFiles(sb)
		}
	}
}

// errUnknownState is containerd's answer for a task whose shim did not
// tell its state in time (containerd 1.6 reports its status UNKNOWN).
var errUnknownState = fmt.Errorf("state unknown: %w", errdefs.ErrUnavailable)

// taskState reads whether the sandbox's pause container runs. A ready
// sandbox whose pause exited while peapod was down, or whose task is gone,
// is not ready any more. containerd failing to answer, or answering that
// it does not know, says nothing of the pause: that is an error, and the
// recorded state stays (a pod reported not ready is one the kubelet tears
// down).
func (m *Manager) taskState(ctx context.Context, id string, recorded State) (State, uint32, error) {
	if recorded != StateReady {
		return recorded, 0, nil
	}
	task, err := m.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err = errgrpc.ToNative(err); errdefs.IsNotFound(err) {
		return StateNotReady, 0, nil
	} else if err != nil {
		return recorded, 0, fmt.Errorf("reading the pause task of sandbox %s: %w", id, err)
	}
	switch p := task.GetProcess(); p.GetStatus() {
	case tasktypes.Status_RUNNING:
		return StateReady, p.GetPid(), nil
	case tasktypes.Status_STOPPED, tasktypes.Status_CREATED:
		return StateNotReady, 0, nil
	default:
		return recorded, 0, fmt.Errorf("the pause task of sandbox %s is %s: %w", id, p.GetStatus(), errUnknownState)
	}
}

// recheckLater asks containerd again, in the background and with backoff,
// for the pause task of ready sandbox id whose state it could not tell, until
// it can: then a pause that is gone makes the pod not ready, and one that
// runs gives the pod its PID.
func (m *Manager) recheckLater(ctx context.Context, id string) {
	go func() {
		ctx := context.WithoutCancel(ctx)
		for delay := cleanupRetryFirst; ; delay = min(2*delay, cleanupRetryMax) {
			time.Sleep(delay)
			sb, err := m.index.Get(id)
			if err != nil || sb.State != StateReady {
				return // removed, or settled by an exit event
			}
			state, pid, err := m.taskState(ctx, id, sb.State)
			if err != nil {
				klog.V(2).InfoS("Reading a sandbox's pause task; asking again", "id", id, "err", err, "in", 2*delay)
				continue
			}
			if state != StateReady {
				m.markNotReady(ctx, id)
			} else {
				m.index.Update(id, func(r *Sandbox) {
					if r.State == StateReady && r.Pid == 0 {
						r.Pid = pid
					}
				})
			}
			return
		}
	}()
}

// retryCleanup retries, in the background, the cleanup of a half-made
// sandbox (its network and IP above all) that failed at recovery, until it
// succeeds: a failure then is usually containerd or a CNI plugin being
// briefly unavailable, and must not wait for the next restart.
func (m *Manager) retryCleanup(ctx context.Context, sb *Sandbox) {
	m.pendingMu.Lock()
	defer m.pendingMu.Unlock()
	if m.pending == nil {
		m.pending = map[string]*Sandbox{}
	}
	if _, ok := m.pending[sb.ID]; ok {
		return
	}
	m.pending[sb.ID] = sb
	go func() {
		ctx := context.WithoutCancel(ctx)
		for delay := cleanupRetryFirst; ; delay = min(2*delay, cleanupRetryMax) {
			time.Sleep(delay)
			err := m.cleanup(ctx, sb)
			if err == nil {
				klog.InfoS("Cleaned up a sandbox whose creation was interrupted", "id", sb.ID)
				m.pendingMu.Lock()
				delete(m.pending, sb.ID)
				m.pendingMu.Unlock()
				return
			}
			klog.ErrorS(err, "Cleaning up interrupted sandbox failed; retrying", "id", sb.ID, "in", 2*delay)
		}
	}()
}

// PendingCleanups lists the sandboxes whose cleanup is still being retried.
func (m *Manager) PendingCleanups() []string {
	m.pendingMu.Lock()
	defer m.pendingMu.Unlock()
	out := make([]string, 0, len(m.pending))
	for id := range m.pending {
		out = append(out, id)
	}
	return out
}
