package sandbox

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// State is where a sandbox is in its life.
type State string

const (
	// StateCreating: RunPodSandbox has not finished. A sandbox found in this
	// state at start-up was interrupted and is cleaned up.
	StateCreating State = "creating"
	// StateReady: the pause container runs and the network is set up.
	StateReady State = "ready"
	// StateNotReady: stopped, or the pause container exited.
	StateNotReady State = "notready"
)

// Record is everything peapod keeps about a sandbox. It is persisted as an
// extension of the sandbox's containerd container, so it survives restarts.
type Record struct {
	ID string `json:"id"`
	// Config is the CRI config, protobuf-encoded (it is a protobuf message).
	Config         []byte    `json:"config"`
	RuntimeHandler string    `json:"runtimeHandler,omitempty"`
	CreatedAt      time.Time `json:"createdAt"`
	// NetNS is the path of the pod's pinned network namespace ("" for host network).
	NetNS string `json:"netns,omitempty"`

	// Mutable status.
	State   State    `json:"state"`
	Network string   `json:"network,omitempty"` // CNI network set up; "" once torn down
	IPs     []string `json:"ips,omitempty"`
	Pid     uint32   `json:"pid,omitempty"`
}

// Sandbox is a sandbox as the store holds it: the decoded config beside its record.
type Sandbox struct {
	Record
	Config *runtime.PodSandboxConfig
}

// HostNetwork reports whether the pod uses the host's network namespace.
func (s *Sandbox) HostNetwork() bool {
	return s.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
}

// reservationName is the CRI's unique key for a pod sandbox.
func reservationName(m *runtime.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt())
}

// store is the in-memory index of sandboxes (the kubelet lists and inspects
// them every second) plus the name reservations that make concurrent or
// retried RunPodSandbox calls with one name safe.
type store struct {
	mu        sync.RWMutex
	byID      map[string]*Sandbox
	reserved  map[string]string // reservation name → sandbox ID
	idLocks   map[string]*sync.Mutex
	idLocksMu sync.Mutex
}

func newStore() *store {
	return &store{byID: map[string]*Sandbox{}, reserved: map[string]string{}, idLocks: map[string]*sync.Mutex{}}
}

// reserve claims name for id; it fails if another sandbox holds the name.
func (s *store) reserve(name, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.reserved[name]; ok && cur != id {
		return fmt.Errorf("pod sandbox name %q is reserved for %s: %w", name, cur, errdefs.ErrAlreadyExists)
	}
	s.reserved[name] = id
	return nil
}

func (s *store) release(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reserved[name] == id {
		delete(s.reserved, name)
	}
}

func (s *store) add(sb *Sandbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[sb.ID] = sb
	s.reserved[reservationName(sb.Config.GetMetadata())] = sb.ID
}

func (s *store) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sb, ok := s.byID[id]; ok {
		delete(s.byID, id)
		name := reservationName(sb.Config.GetMetadata())
		if s.reserved[name] == id {
			delete(s.reserved, name)
		}
	}
}

// update applies fn to the stored record of id (under the store lock) and
// returns a copy of the result.
func (s *store) update(id string, fn func(*Record)) (Sandbox, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, ok := s.byID[id]
	if !ok {
		return Sandbox{}, false
	}
	fn(&sb.Record)
	return *sb, true
}

// get finds a sandbox by full ID or unique ID prefix.
func (s *store) get(idOrPrefix string) (Sandbox, error) {
	if idOrPrefix == "" {
		return Sandbox{}, fmt.Errorf("no pod sandbox ID given: %w", errdefs.ErrInvalidArgument)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sb, ok := s.byID[idOrPrefix]; ok {
		return *sb, nil
	}
	var found *Sandbox
	for id, sb := range s.byID {
		if strings.HasPrefix(id, idOrPrefix) {
			if found != nil {
				return Sandbox{}, fmt.Errorf("pod sandbox ID prefix %q is ambiguous: %w", idOrPrefix, errdefs.ErrInvalidArgument)
			}
			found = sb
		}
	}
	if found == nil {
		return Sandbox{}, fmt.Errorf("pod sandbox %q: %w", idOrPrefix, errdefs.ErrNotFound)
	}
	return *found, nil
}

func (s *store) list() []Sandbox {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Sandbox, 0, len(s.byID))
	for _, sb := range s.byID {
		out = append(out, *sb)
	}
	slices.SortFunc(out, func(a, b Sandbox) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// lock serializes operations (run, stop, remove) on one sandbox ID.
func (s *store) lock(id string) func() {
	s.idLocksMu.Lock()
	l, ok := s.idLocks[id]
	if !ok {
		l = &sync.Mutex{}
		s.idLocks[id] = l
	}
	s.idLocksMu.Unlock()
	l.Lock()
	return l.Unlock
}
