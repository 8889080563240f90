// Package container owns CRI containers: their OCI spec (built from the image
// and the CRI ContainerConfig with composable spec options, joining the
// sandbox's namespaces), their lifecycle in containerd, their CRI-format
// logs, and ExecSync.
//
// Like sandboxes, each container's Record is stored on its containerd
// container, and an in-memory index serves the kubelet's frequent calls.
package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/cgroupstats"
	"github.com/peapod-cri/peapod/containerio"
	"github.com/peapod-cri/peapod/eventbus"
	"github.com/peapod-cri/peapod/hostcaps"
	"github.com/peapod-cri/peapod/image"
	"github.com/peapod-cri/peapod/monitor"
	"github.com/peapod-cri/peapod/record"
	"github.com/peapod-cri/peapod/runtimehandler"
	"github.com/peapod-cri/peapod/sandbox"
	"github.com/peapod-cri/peapod/store"
)

const (
	kindLabel     = "io.peapod.kind"
	kindContainer = "container"
	sandboxLabel  = "io.peapod.sandbox-id"
	// The extensions holding a container's Metadata and Status. The
	// metadata one keeps its pre-split name and type URL, so that records
	// written before (holding both) load as they are.
	recordExtension = "io.peapod.container"
	statusExtension = "io.peapod.container.status"
)

func init() {
	typeurl.Register(&Metadata{}, "io.peapod", "container", "Record")
	typeurl.Register(&Status{}, "io.peapod", "container", "Status")
}

// Exit reasons, as the kubelet knows them.
const (
	ReasonCompleted  = "Completed"
	ReasonError      = "Error"
	ReasonOOMKilled  = "OOMKilled"
	ReasonStartError = "StartError"
)

// Config configures the container Manager.
type Config struct {
	// StateDir holds runtime state (stdio and exec fifos, attach sockets,
	// the IO server's registrations).
	StateDir string
	// IOBinary is the program (peapod-io) run as the node's IO server.
	IOBinary string
	// Events receives the containers' lifecycle events (may be nil).
	Events *eventbus.Bus
	// Handlers are the runtime handlers; a container runs with its pod's.
	Handlers *runtimehandler.Set
	// Namespace is peapod's containerd namespace, the parent of the cgroups
	// of containers whose pod names none.
	Namespace string
	// ContainerdAddress is containerd's socket: the shims of peapod's tasks
	// are known by it and the namespace (see shimreaper).
	ContainerdAddress string
	// Host is what the node can give containers (cgroup controllers, OOM
	// scores); what it cannot is left out of their specs.
	Host hostcaps.Caps
}

// Manager runs containers in sandboxes.
type Manager struct {
	client    *client.Client
	images    *image.Service
	sandboxes *sandbox.Manager
	config    Config
	index     *store.Store[Container]
	// statusWriters serializes the status writes of each container.
	statusWriters store.Locks

	// watching holds the IDs whose exit a goroutine waits on.
	watching sync.Map
	// checkpointing holds the IDs being checkpointed: their tasks are
	// paused on purpose.
	checkpointing sync.Map
	stats         statsCache
	// io is the IO server, which writes the containers' logs.
	io      *ioServer
	watchIO sync.Once
	// leftExecs are the execs a dead peapod left (see execleft.go).
	leftExecs leftExecs
}

// New returns a Manager. Its index is rebuilt from containerd by Recover,
// which must succeed before any other method is called.
func New(c *client.Client, images *image.Service, sandboxes *sandbox.Manager, cfg Config) *Manager {
	return &Manager{client: c, images: images, sandboxes: sandboxes, config: cfg, index: newIndex(),
		io: newIOServer(cfg.IOBinary, cfg.StateDir)}
}

// Get returns the container with the given ID or unique ID prefix.
func (m *Manager) Get(_ context.Context, id string) (Container, error) {
	return m.index.Get(id)
}

// locked returns the container with the given ID or unique ID prefix, read
// again once its lifecycle lock is held, and the function that releases
// the lock.
func (m *Manager) locked(_ context.Context, id string) (Container, func(), error) {
	return m.index.GetLocked(id)
}

// List returns all containers, oldest first.
func (m *Manager) List(_ context.Context) ([]Container, error) {
	return m.index.List(), nil
}

// InSandbox returns the containers of one sandbox.
func (m *Manager) InSandbox(ctx context.Context, sandboxID string) ([]Container, error) {
	all, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []Container
	for _, c := range all {
		if c.SandboxID == sandboxID {
			out = append(out, c)
		}
	}
	return out, nil
}

// persistStatus writes container id's status to its containerd container.
// Writes of one container's status are serialized, and each writes the
// status current when it runs, not one read before it waited: whatever
// order concurrent writers (start, exit, OOM event, update) run in, the
// last write leaves the latest status. A removed container is not written.
func (m *Manager) persistStatus(ctx context.Context, id string) error {
	unlock := m.statusWriters.Lock(id)
	defer unlock()
	c, err := m.index.Get(id)
	if err != nil {
		return nil
	}
	return record.Save(ctx, m.client, id, statusExtension, &c.Status)
}

// decode reads a container back from its containerd container.
func decode(c containers.Container) (*Container, error) {
	var rec Record
	if err := record.Load(c, recordExtension, &rec); err != nil {
		return nil, err
	}
	// The status, when written apart, is the whole status (a record from
	// before the split holds its status in the metadata extension).
	var st Status
	if ok, err := record.LoadIfPresent(c, statusExtension, &st); err != nil {
		return nil, err
	} else if ok {
		rec.Status = st
	}
	cfg := &runtime.ContainerConfig{}
	if err := proto.Unmarshal(rec.Config, cfg); err != nil {
		return nil, fmt.Errorf("decoding config of container %s: %w", c.ID, err)
	}
	if len(rec.Resources) > 0 {
		res := &runtime.LinuxContainerResources{}
		if err := proto.Unmarshal(rec.Resources, res); err != nil {
			return nil, fmt.Errorf("decoding updated resources of container %s: %w", c.ID, err)
		}
		if cfg.Linux == nil {
			cfg.Linux = &runtime.LinuxContainerConfig{}
		}
		cfg.Linux.Resources = res
	}
	return &Container{Record: rec, Config: cfg}, nil
}

// TaskExited records a container's exit reported by the event monitor.
func (m *Manager) TaskExited(ctx context.Context, e monitor.Exit) {
	// An exit that names no process is containerd's guess, not a shim's
	// report: containerd sends one (137, or 255 when the shim's delete
	// failed) when a shim's connection closes. containerd 1.6 sends it for
	// the shim of an earlier task of the ID too, one a Start cut short,
	// after a retried Start has made the task that runs now. While the
	// container's recorded process lives, its exit is still to come.
	if c, err := m.index.Get(e.ContainerID); e.Pid == 0 && err == nil && c.State == StateRunning && processLives(c.Pid, c.PidStart) {
		klog.InfoS("containerd reported an exit naming no process for a container whose process runs; not its exit", "id", c.ID, "pid", c.Pid, "exitStatus", e.ExitStatus)
		return
	}
	// The exit watch often sees the same exit: whichever records it
	// releases the task.
	if m.recordExitOf(ctx, e.ContainerID, e.Pid, int32(e.ExitStatus), e.ExitedAt) {
		m.releaseTaskLater(ctx, e.ContainerID)
	}
}

// Resync catches exits the event stream did not deliver: a container
// recorded as running whose task is gone or stopped gets its exit recorded.
func (m *Manager) Resync(ctx context.Context) {
	if err := m.resync(ctx); err != nil {
		klog.ErrorS(err, "Resyncing containers with their tasks")
	}
}

func (m *Manager) resync(ctx context.Context) error {
	resp, err := m.client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return fmt.Errorf("listing tasks: %w", err)
	}
	procs := make(map[string]*tasktypes.Process, len(resp.GetTasks()))
	for _, p := range resp.GetTasks() {
		procs[p.GetID()] = p
	}
	// Exits are released (and so revealed, see revealExit) before resync
	// returns: at start-up, before the CRI is served, an exit that happened
	// while peapod was down is reported from the first answer.
	for _, c := range m.index.List() {
		p, hasTask := procs[c.ID]
		if !hasTask && c.State == StateRunning {
			// containerd 2.x leaves out of its list a task whose shim did
			// not tell its state in time (1.6 lists it UNKNOWN), as a busy
			// shim may not: only Get's NotFound says the task is gone.
			resp, err := m.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: c.ID})
			if err = errgrpc.ToNative(err); err == nil {
				p, hasTask = resp.GetProcess(), true
			} else if !errdefs.IsNotFound(err) {
				klog.InfoS("containerd left the task of a running container out of its list, and cannot tell it now; following it", "id", c.ID, "err", err)
				m.rewatch(ctx, c.ID)
				continue
			}
		}
		switch {
		case c.State == StateExited && hasTask:
			m.releaseExited(ctx, c.ID) // its exit was recorded, then peapod stopped
		case c.State == StateCreated && hasTask:
			m.finishStart(ctx, c, p) // peapod died inside StartContainer
		case c.State != StateRunning:
		case !hasTask:
			m.watchLost(ctx, c) // its exit, if its process is gone
		case p.GetStatus() == tasktypes.Status_STOPPED:
			klog.V(2).InfoS("The task of a running container has stopped", "id", c.ID, "exitStatus", p.GetExitStatus(), "exitedAt", p.GetExitedAt().AsTime())
			if m.recordExit(ctx, c.ID, int32(p.GetExitStatus()), p.GetExitedAt().AsTime()) {
				m.releaseExited(ctx, c.ID)
			}
		case p.GetStatus() == tasktypes.Status_PAUSED:
			m.resumeAbandoned(ctx, c.ID)
			m.rewatch(ctx, c.ID)
		default:
			m.rewatch(ctx, c.ID)
		}
	}
	return nil
}

// releaseTask deletes the task of exited container id, so that its shim
// lets go of the container's IO (the fifos, whose end the IO server sees) and its
// runc state and cgroup now, not at RemoveContainer, which the kubelet may
// call much later, or never for the last exited container of a pod. The
// caller holds the container's lock.
func (m *Manager) releaseTask(ctx context.Context, id string) {
	_, err := m.client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id})
	if err = errgrpc.ToNative(err); errdefs.IsNotFound(err) {
		m.releaseLost(ctx, id)
	} else if err != nil {
		klog.ErrorS(err, "Releasing the task of an exited container", "id", id)
	}
	m.revealExit(id)
}

// releaseTaskLater is releaseExited in the background.
func (m *Manager) releaseTaskLater(ctx context.Context, id string) {
	ctx = context.WithoutCancel(ctx)
	go m.releaseExited(ctx, id)
}

// releaseExited is releaseTask under the container's lock, if it is still
// there and exited. The release reveals the exit, whatever else happens.
func (m *Manager) releaseExited(ctx context.Context, id string) {
	unlock := m.index.Lock(id)
	defer unlock()
	if c, err := m.index.Get(id); err != nil || c.State != StateExited {
		return // removed meanwhile, or not exited
	}
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	m.releaseTask(ctx, id)
}

// rewatch follows the exit of a running container's task again, after a
// restart of peapod or a break of the event stream.
func (m *Manager) rewatch(ctx context.Context, id string) {
	if _, loaded := m.watching.LoadOrStore(id, true); loaded {
		return
	}
	ctr, err := m.client.LoadContainer(ctx, id)
	if err != nil {
		m.watching.Delete(id)
		return
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		m.watching.Delete(id)
		return
	}
	exited, err := task.Wait(context.WithoutCancel(ctx))
	if err != nil {
		m.watching.Delete(id)
		return
	}
	go func() {
		defer m.watching.Delete(id)
		m.watchExit(context.WithoutCancel(ctx), id, exited)
	}()
}

// recordExit marks a running container exited, once, and reports whether
// this call did. Its task must not be deleted yet: a SIGKILL (137) is told
// apart as OOMKilled by its cgroup's OOM kill count, since the OOM event
// often arrives after the exit.
func (m *Manager) recordExit(ctx context.Context, id string, code int32, at time.Time) bool {
	return m.recordExitOf(ctx, id, 0, code, at)
}

// recordExitOf is recordExit for the exit of process pid, which is
// recorded only if it is the container's (0: whichever it is). An event
// can come late: the exit of a task a Start cut short by a crash left, and
// recovery deleted, arrives after a retried Start has made another.
func (m *Manager) recordExitOf(ctx context.Context, id string, pid uint32, code int32, at time.Time) bool {
	oomKilled := false
	if c, err := m.index.Get(id); code == 137 && err == nil && c.State == StateRunning && c.CgroupsPath != "" {
		n, err := cgroupstats.OOMKills(c.CgroupsPath)
		oomKilled = err == nil && n > 0
	}
	changed := false
	c, ok := m.index.Update(id, func(r *Container) {
		if changed = r.exit(pid, code, at, oomKilled); changed {
			r.Draining = true
		}
	})
	if !ok || !changed {
		return false
	}
	klog.V(2).InfoS("Container exited", "id", id, "exitCode", code, "reason", c.Reason)
	if err := m.persistStatus(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Persisting container exit", "id", id)
	}
	return true
}

// revealExit makes a recorded exit visible (in statuses, lists and
// events) once the IO server has written the container's last output, at
// most ioDrainTimeout after the task's release: the kubelet reads a
// container's last log lines (FallbackToLogsOnError) when it sees it exit,
// and the last line, if it has no newline, is written only when the
// stream ends, which the shim signals by closing the fifos.
func (m *Manager) revealExit(id string) {
	if containerio.Running(m.pidFile(id)) { // an IO process of its own, from before the server
		deadline := time.Now().Add(ioDrainTimeout)
		for containerio.Running(m.pidFile(id)) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	} else if err := m.io.client.Drain(context.Background(), id, ioDrainTimeout); err != nil {
		klog.V(2).InfoS("Waiting for a container's last output", "id", id, "err", err)
	}
	revealed := false
	c, ok := m.index.Update(id, func(r *Container) {
		revealed, r.Draining = r.Draining, false
	})
	if ok && revealed {
		m.publish(&c, eventbus.Stopped)
	}
}

// OOMKilled marks a container whose cgroup hit its memory limit, so its exit
// is reported as OOMKilled, whether the event comes before the exit or, as
// it often does, after it (then the record is written again), as
// containerd's CRI keeps it.
func (m *Manager) OOMKilled(ctx context.Context, id string) {
	rewrite := false
	_, ok := m.index.Update(id, func(r *Container) { rewrite = r.oomKill() })
	if !ok || !rewrite {
		return
	}
	klog.V(2).InfoS("Container was OOM-killed", "id", id)
	if err := m.persistStatus(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Persisting container OOM kill", "id", id)
	}
}

// publish announces a lifecycle event of container c.
func (m *Manager) publish(c *Container, t eventbus.Type) {
	m.config.Events.Publish(eventbus.Event{ContainerID: c.ID, SandboxID: c.SandboxID, Type: t, At: time.Now()})
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
