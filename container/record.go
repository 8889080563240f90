package container

import (
	"fmt"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/store"
)

// State is where a container is in its life.
type State string

const (
	StateCreated State = "created"
	StateRunning State = "running"
	StateExited  State = "exited"
)

// Record is everything peapod keeps about a container, persisted on its
// containerd container as two extensions, so that it survives restarts:
// its Metadata, written once when the container is made, and its Status,
// rewritten on every change of state by one writer at a time, which always
// writes the current status (Manager.persistStatus). Records written
// before the split hold both in the metadata extension, and still load.
type Record struct {
	Metadata
	Status
}

// Metadata is what a container is; it does not change.
type Metadata struct {
	ID        string `json:"id"`
	SandboxID string `json:"sandboxID"`
	// Config is the CRI config, protobuf-encoded.
	Config []byte `json:"config"`
	// ImageID is the image's ID; ImageRef the reference it was asked by.
	ImageID  string `json:"imageID"`
	ImageRef string `json:"imageRef"`
	// LogPath is the absolute path of the container's CRI log.
	LogPath string `json:"logPath,omitempty"`
	// CgroupsPath is the container's cgroup, as in its OCI spec.
	CgroupsPath string `json:"cgroupsPath,omitempty"`
	// User is the identity of the container's first process, as its OCI
	// spec gives it (nil for containers made before peapod recorded it).
	User *User `json:"user,omitempty"`
	// ImageVolumes are the container's image mounts, each a read-only view
	// of an image mounted on the host (see imagevolume.go).
	ImageVolumes []ImageVolume `json:"imageVolumes,omitempty"`
	CreatedAt    time.Time     `json:"createdAt"`
}

// Status is where a container is in its life.
type Status struct {
	State      State     `json:"state"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	ExitCode   int32     `json:"exitCode"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	Pid        uint32    `json:"pid,omitempty"`
	// PidStart is when process Pid started, in clock ticks since boot:
	// with the PID it names the process (see processLives).
	PidStart uint64 `json:"pidStart,omitempty"`
	// Resources are the Linux resources of the last UpdateContainerResources,
	// protobuf-encoded; none: those of the config.
	Resources []byte `json:"resources,omitempty"`
}

// User is a process identity: user, primary group and every group it is in.
type User struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
}

// Container is a container as the store holds it.
type Container struct {
	Record
	Config *runtime.ContainerConfig
	// Draining: the container has exited (its record says so) but its IO
	// process may not have written its last output yet; it is reported
	// running until it has (see Manager.revealExit).
	Draining bool
}

// Reported is the container as the CRI reports it: one that has exited but
// is still draining its output is running, with no exit yet (see
// Manager.revealExit).
func (c Container) Reported() Container {
	if c.Draining {
		c.State, c.FinishedAt, c.ExitCode, c.Reason, c.Message = StateRunning, time.Time{}, 0, "", ""
	}
	return c
}

// exit records the exit of a running container, with the reason the
// kubelet shows: OOMKilled when the OOM killer killed it (an OOM event came
// first, or its cgroup counted a kill), else Completed or Error by its exit
// code. pid is the process that exited: the exit of another than the
// container's (a late event about a task since replaced) is not its exit;
// 0 means the container's, whichever it is. It reports whether the
// container was running.
func (c *Container) exit(pid uint32, code int32, at time.Time, oomKilled bool) bool {
	if c.State != StateRunning || pid != 0 && c.Pid != 0 && pid != c.Pid {
		return false
	}
	c.State, c.ExitCode, c.FinishedAt, c.Pid, c.PidStart = StateExited, code, at, 0, 0
	if oomKilled {
		c.Reason = ReasonOOMKilled
	}
	if c.Reason == "" {
		c.Reason = ReasonCompleted
		if code != 0 {
			c.Reason = ReasonError
		}
	}
	return true
}

// oomKill records an OOM event of a started container, before or after its
// exit, and reports whether that changed a recorded exit.
func (c *Container) oomKill() (changedExit bool) {
	if c.State == StateCreated || c.Reason == ReasonOOMKilled {
		return false
	}
	c.Reason = ReasonOOMKilled
	return c.State == StateExited
}

// reservationName is the CRI's unique key for a container in a sandbox.
func reservationName(sandboxID string, md *runtime.ContainerMetadata) string {
	return fmt.Sprintf("%s_%s_%d", sandboxID, md.GetName(), md.GetAttempt())
}

// newIndex returns the in-memory index of containers.
func newIndex() *store.Store[Container] {
	return store.New("container",
		func(x *Container) (string, string) { return x.ID, reservationName(x.SandboxID, x.Config.GetMetadata()) },
		func(a, b *Container) int { return a.CreatedAt.Compare(b.CreatedAt) })
}
