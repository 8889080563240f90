package sandbox

import (
	"fmt"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/store"
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

// Record is everything peapod keeps about a sandbox, persisted on its
// containerd container as two extensions, so that it survives restarts:
// its Metadata, written once with the container, and its Status, rewritten
// on every change of state by one writer at a time, which always writes the
// current status (Manager.persistStatus). Records written before the split
// hold both in the metadata extension, and still load.
type Record struct {
	Metadata
	Status
}

// Metadata is what a sandbox is; it does not change.
type Metadata struct {
	ID string `json:"id"`
	// Config is the CRI config, protobuf-encoded (it is a protobuf message).
	Config         []byte    `json:"config"`
	RuntimeHandler string    `json:"runtimeHandler,omitempty"`
	CreatedAt      time.Time `json:"createdAt"`
	// NetNS is the path of the pod's pinned network namespace ("" for host
	// network). It is recorded before anything is asked of CNI.
	NetNS string `json:"netns,omitempty"`
	// UserNS is the path of the pod's pinned user namespace ("" for the host's).
	UserNS string `json:"userns,omitempty"`
}

// Status is where a sandbox is in its life.
type Status struct {
	State   State    `json:"state"`
	Network string   `json:"network,omitempty"` // CNI network set up; "" once torn down
	IPs     []string `json:"ips,omitempty"`
	Pid     uint32   `json:"pid,omitempty"`
	// ShimGroup: the sandbox is in containerd's sandbox store, and its
	// containers name it, so that their tasks join its shim (shimgroup.go).
	ShimGroup bool `json:"shimGroup,omitempty"`
	// Stopped: StopPodSandbox released what the sandbox held outside its
	// containerd container (pause task, network, netns, mounts), so
	// RemovePodSandbox need not do it again.
	Stopped bool `json:"stopped,omitempty"`
}

// Sandbox is a sandbox as the store holds it: the decoded config beside its record.
type Sandbox struct {
	Record
	Config *runtime.PodSandboxConfig
	// Retiring is set (in memory) once StopPodSandbox or RemovePodSandbox
	// began: no container may be created in the sandbox from then on.
	Retiring bool
}

// HostNetwork reports whether the pod uses the host's network namespace.
func (s *Sandbox) HostNetwork() bool {
	return s.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
}

// reservationName is the CRI's unique key for a pod sandbox.
func reservationName(m *runtime.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt())
}

// newIndex returns the in-memory index of pod sandboxes.
func newIndex() *store.Store[Sandbox] {
	return store.New("pod sandbox",
		func(x *Sandbox) (string, string) { return x.ID, reservationName(x.Config.GetMetadata()) },
		func(a, b *Sandbox) int { return a.CreatedAt.Compare(b.CreatedAt) })
}
