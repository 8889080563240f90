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
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

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
	// The extensions holding a sandbox's Metadata and Status. The metadata
	// one keeps its pre-split name and type URL, so that records written
	// before (holding both) load as they are.
	recordExtension = "io.peapod.sandbox"
	statusExtension = "io.peapod.sandbox.status"
)

func init() {
	typeurl.Register(&Metadata{}, "io.peapod", "sandbox", "Record")
	typeurl.Register(&Status{}, "io.peapod", "sandbox", "Status")
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
	// statusWriters serializes the status writes of each sandbox.
	statusWriters store.Locks

	// pending are sandboxes whose cleanup failed at recovery, retried
	// in the background until it succeeds.
	pendingMu sync.Mutex
	pending   map[string]*Sandbox
	// noSandboxStore: containerd has no sandbox store (1.6).
	noSandboxStore atomic.Bool
}

// New returns a Manager. Its store is rebuilt from containerd by Recover,
// which must succeed before any other method is called.
func New(c *client.Client, images *image.Service, net *network.Manager, cfg Config) *Manager {
	return &Manager{client: c, images: images, network: net, config: cfg, index: newIndex()}
}

func (m *Manager) netnsDir() string         { return filepath.Join(m.config.StateDir, "netns") }
func (m *Manager) rootDir(id string) string { return filepath.Join(m.config.RootDir, "sandboxes", id) }
func (m *Manager) stateDir(id string) string {
	return filepath.Join(m.config.StateDir, "sandboxes", id)
}

// Get returns the sandbox with the given ID or unique ID prefix.
func (m *Manager) Get(_ context.Context, id string) (Sandbox, error) {
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
func (m *Manager) List(_ context.Context) ([]Sandbox, error) {
	return m.index.List(), nil
}

// persistStatus writes sandbox id's status to its containerd container.
// Writes of one sandbox's status are serialized, and each writes the status
// current when it runs, so that the last write leaves the latest status
// whatever order the writers (Stop, the pause's exit) run in. A removed
// sandbox is not written.
func (m *Manager) persistStatus(ctx context.Context, id string) error {
	unlock := m.statusWriters.Lock(id)
	defer unlock()
	sb, err := m.index.Get(id)
	if err != nil {
		return nil
	}
	return record.Save(ctx, m.client, id, statusExtension, &sb.Status)
}

// decode reads a sandbox back from its containerd container.
func decode(c containers.Container) (*Sandbox, error) {
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
	cfg := &runtime.PodSandboxConfig{}
	if err := proto.Unmarshal(rec.Config, cfg); err != nil {
		return nil, fmt.Errorf("decoding sandbox config of %s: %w", c.ID, err)
	}
	return &Sandbox{Record: rec, Config: cfg}, nil
}

// TaskExited is told by the event monitor that a task exited; when it is a
// sandbox's pause container, the sandbox is not ready any more.
func (m *Manager) TaskExited(ctx context.Context, e monitor.Exit) {
	m.markNotReady(ctx, e.ContainerID)
}

// Resync catches pause exits the event stream missed.
func (m *Manager) Resync(ctx context.Context) {
	for _, sb := range m.index.List() {
		if sb.State != StateReady {
			continue
		}
		state, _, err := m.taskState(ctx, sb.ID, sb.State)
		if err != nil {
			klog.ErrorS(err, "Resyncing a sandbox with its pause task; asking again in the background", "id", sb.ID)
			m.recheckLater(ctx, sb.ID)
			continue
		}
		if state != StateReady {
			m.markNotReady(ctx, sb.ID)
		}
	}
}

func (m *Manager) markNotReady(ctx context.Context, id string) {
	changed := false
	_, ok := m.index.Update(id, func(r *Sandbox) {
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
	if err := m.persistStatus(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Persisting sandbox state", "id", id)
	}
}
