// Package sandbox owns pod sandboxes: the pinned network namespace, the pod
// network (through the network package), the pause container that holds the
// pod's namespaces, and the files containers of the pod share (resolv.conf,
// hostname, hosts, /dev/shm).
//
// A sandbox is a containerd container labelled as such; its Record lives on
// that container as an extension, written before each step that creates
// something outside containerd, so a crash at any point leaves a record that
// start-up recovery can finish or clean.
package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/eventbus"
	"github.com/peapod-cri/peapod/hostcaps"
	"github.com/peapod-cri/peapod/image"
	"github.com/peapod-cri/peapod/monitor"
	"github.com/peapod-cri/peapod/network"
	"github.com/peapod-cri/peapod/record"
	"github.com/peapod-cri/peapod/runtimehandler"
	"github.com/peapod-cri/peapod/store"
)

const (
	// kindLabel marks peapod's containerd containers with what they are.
	kindLabel   = "io.peapod.kind"
	kindSandbox = "sandbox"
	// recordExtension is the containerd container extension holding the Record.
	recordExtension = "io.peapod.sandbox"
)

func init() {
	typeurl.Register(&Record{}, "io.peapod", "sandbox", "Record")
}

// Config configures the sandbox Manager.
type Config struct {
	// PauseImage is the image of the pause container.
	PauseImage string
	// PauseBinary is the static program (peapod-io) peapod's built-in pause
	// image is made of, for nodes where PauseImage cannot be pulled.
	PauseBinary string
	// Events receives the sandboxes' lifecycle events (may be nil).
	Events *eventbus.Bus
	// Handlers are the runtime handlers pods may name.
	Handlers *runtimehandler.Set
	// RootDir holds per-sandbox files that must outlive a reboot of peapod
	// (resolv.conf, hostname, hosts); StateDir runtime state (netns pins, shm).
	RootDir, StateDir string
	// Host is what the node can give the pause container (its OOM score).
	Host hostcaps.Caps
}

// Manager runs pod sandboxes.
type Manager struct {
	client  *client.Client
	images  *image.Service
	network *network.Manager
	config  Config
	index   *store.Store[Sandbox]

	loadMu sync.Mutex
	loaded bool
	// noSandboxStore: containerd has no sandbox store (1.6).
	noSandboxStore atomic.Bool
}

// New returns a Manager. Its store is rebuilt from containerd on first use.
func New(c *client.Client, images *image.Service, net *network.Manager, cfg Config) *Manager {
	return &Manager{client: c, images: images, network: net, config: cfg, index: newIndex()}
}

func (m *Manager) netnsDir() string         { return filepath.Join(m.config.StateDir, "netns") }
func (m *Manager) rootDir(id string) string { return filepath.Join(m.config.RootDir, "sandboxes", id) }
func (m *Manager) stateDir(id string) string {
	return filepath.Join(m.config.StateDir, "sandboxes", id)
}

// Get returns the sandbox with the given ID or unique ID prefix.
func (m *Manager) Get(ctx context.Context, id string) (Sandbox, error) {
	if err := m.ensureLoaded(ctx); err != nil {
		return Sandbox{}, err
	}
	return m.index.Get(id)
}

// publish announces a lifecycle event of sandbox id.
func (m *Manager) publish(id string, t eventbus.Type) {
	m.config.Events.Publish(eventbus.Event{ContainerID: id, SandboxID: id, Type: t, At: time.Now()})
}

// NetNSPath returns the path of a ready sandbox's network namespace, or ""
// when it uses the host's network.
func (m *Manager) NetNSPath(ctx context.Context, id string) (string, error) {
	sb, err := m.Get(ctx, id)
	if err != nil {
		return "", err
	}
	if sb.State != StateReady {
		return "", fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	return sb.NetNS, nil
}

// List returns all sandboxes, oldest first.
func (m *Manager) List(ctx context.Context) ([]Sandbox, error) {
	if err := m.ensureLoaded(ctx); err != nil {
		return nil, err
	}
	return m.index.List(), nil
}

// persist writes the record to the sandbox's containerd container.
func (m *Manager) persist(ctx context.Context, rec Record) error {
	return record.Save(ctx, m.client, rec.ID, recordExtension, &rec)
}

// decode reads a sandbox back from its containerd container.
func decode(c containers.Container) (*Sandbox, error) {
	var rec Record
	if err := record.Load(c, recordExtension, &rec); err != nil {
		return nil, err
	}
	cfg := &runtime.PodSandboxConfig{}
	if err := proto.Unmarshal(rec.Config, cfg); err != nil {
		return nil, fmt.Errorf("decoding sandbox config of %s: %w", c.ID, err)
	}
	return &Sandbox{Record: rec, Config: cfg}, nil
}

// ensureLoaded rebuilds the store from containerd once, recovering what an
// earlier peapod left half-done.
func (m *Manager) ensureLoaded(ctx context.Context) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	if m.loaded {
		return nil
	}
	if err := m.recover(ctx); err != nil {
		return err
	}
	m.loaded = true
	return nil
}

// recover loads every sandbox container. One left in StateCreating was
// interrupted mid-RunPodSandbox and is cleaned up (network, netns, files,
// container); the kubelet will run it again. Network namespaces pinned but
// never recorded (a crash before the container was created) are removed.
func (m *Manager) recover(ctx context.Context) error {
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
				klog.ErrorS(err, "Cleaning up interrupted sandbox failed; will retry at next start", "id", sb.ID)
				known[sb.NetNS], known[sb.ID] = true, true
			}
			continue
		}
		known[sb.NetNS], known[sb.ID] = true, true
		sb.State, sb.Pid = m.taskState(ctx, sb.ID, sb.State)
		m.index.Add(sb)
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
			sb := &Sandbox{Record: Record{ID: e.Name()}, Config: &runtime.PodSandboxConfig{}}
			klog.InfoS("Removing files of an unrecorded sandbox", "id", sb.ID)
			if err := m.unmountState(sb); err != nil {
				klog.ErrorS(err, "Unmounting leaked /dev/shm", "id", sb.ID)
				continue
			}
			_ = m.removeFiles(sb)
		}
	}
}

// taskState reads whether the sandbox's pause container runs. A ready
// sandbox whose pause exited while peapod was down is not ready any more.
func (m *Manager) taskState(ctx context.Context, id string, recorded State) (State, uint32) {
	if recorded != StateReady {
		return recorded, 0
	}
	task, err := m.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil || task.GetProcess().GetStatus() != tasktypes.Status_RUNNING {
		return StateNotReady, 0
	}
	return StateReady, task.GetProcess().GetPid()
}

// TaskExited is told by the event monitor that a task exited; when it is a
// sandbox's pause container, the sandbox is not ready any more.
func (m *Manager) TaskExited(ctx context.Context, e monitor.Exit) {
	m.markNotReady(ctx, e.ContainerID)
}

// Resync catches pause exits the event stream missed.
func (m *Manager) Resync(ctx context.Context) {
	if err := m.ensureLoaded(ctx); err != nil {
		klog.ErrorS(err, "Loading sandboxes")
		return
	}
	for _, sb := range m.index.List() {
		if sb.State != StateReady {
			continue
		}
		if state, _ := m.taskState(ctx, sb.ID, sb.State); state != StateReady {
			m.markNotReady(ctx, sb.ID)
		}
	}
}

func (m *Manager) markNotReady(ctx context.Context, id string) {
	changed := false
	sb, ok := m.index.Update(id, func(r *Sandbox) {
		if r.State == StateReady {
			// The pause process is gone: its PID may soon be another
			// process's, whose network counters must not become the pod's.
			r.State, r.Pid, changed = StateNotReady, 0, true
		}
	})
	if !ok || !changed {
		return
	}
	klog.V(2).InfoS("Pause container exited; sandbox not ready", "id", id)
	m.publish(id, eventbus.Stopped)
	if err := m.persist(ctx, sb.Record); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Persisting sandbox state", "id", id)
	}
}
