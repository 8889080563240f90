package container

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// State is where a container is in its life.
type State string

const (
	StateCreated State = "created"
	StateRunning State = "running"
	StateExited  State = "exited"
)

// Record is everything peapod keeps about a container, persisted as an
// extension of its containerd container so it survives restarts.
type Record struct {
	ID        string `json:"id"`
	SandboxID string `json:"sandboxID"`
	// Config is the CRI config, protobuf-encoded.
	Config []byte `json:"config"`
	// ImageID is the image's ID; ImageRef the reference it was asked by.
	ImageID  string `json:"imageID"`
	ImageRef string `json:"imageRef"`
	// LogPath is the absolute path of the container's CRI log.
	LogPath string `json:"logPath,omitempty"`

	State      State     `json:"state"`
	CreatedAt  time.Time `json:"createdAt"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	ExitCode   int32     `json:"exitCode"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	Pid        uint32    `json:"pid,omitempty"`
}

// Container is a container as the store holds it.
type Container struct {
	Record
	Config *runtime.ContainerConfig
}

// store is the in-memory index of containers plus name reservations.
type store struct {
	mu       sync.RWMutex
	byID     map[string]*Container
	reserved map[string]string // reservation name → container ID
	locks    sync.Map          // id → *sync.Mutex
}

func newStore() *store {
	return &store{byID: map[string]*Container{}, reserved: map[string]string{}}
}

// reservationName is the CRI's unique key for a container in a sandbox.
func reservationName(sandboxID string, md *runtime.ContainerMetadata) string {
	return fmt.Sprintf("%s_%s_%d", sandboxID, md.GetName(), md.GetAttempt())
}

func (s *store) reserve(name, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.reserved[name]; ok && cur != id {
		return fmt.Errorf("container name %q is reserved for %s: %w", name, cur, errdefs.ErrAlreadyExists)
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

func (s *store) add(c *Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[c.ID] = c
	s.reserved[reservationName(c.SandboxID, c.Config.GetMetadata())] = c.ID
}

func (s *store) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.byID[id]; ok {
		delete(s.byID, id)
		if name := reservationName(c.SandboxID, c.Config.GetMetadata()); s.reserved[name] == id {
			delete(s.reserved, name)
		}
	}
	s.locks.Delete(id)
}

func (s *store) update(id string, fn func(*Record)) (Container, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byID[id]
	if !ok {
		return Container{}, false
	}
	fn(&c.Record)
	return *c, true
}

func (s *store) get(idOrPrefix string) (Container, error) {
	if idOrPrefix == "" {
		return Container{}, fmt.Errorf("no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c, ok := s.byID[idOrPrefix]; ok {
		return *c, nil
	}
	var found *Container
	for id, c := range s.byID {
		if strings.HasPrefix(id, idOrPrefix) {
			if found != nil {
				return Container{}, fmt.Errorf("container ID prefix %q is ambiguous: %w", idOrPrefix, errdefs.ErrInvalidArgument)
			}
			found = c
		}
	}
	if found == nil {
		return Container{}, fmt.Errorf("container %q: %w", idOrPrefix, errdefs.ErrNotFound)
	}
	return *found, nil
}

func (s *store) list() []Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Container, 0, len(s.byID))
	for _, c := range s.byID {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Container) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// lock serializes lifecycle operations on one container.
func (s *store) lock(id string) func() {
	l, _ := s.locks.LoadOrStore(id, &sync.Mutex{})
	mu := l.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}
