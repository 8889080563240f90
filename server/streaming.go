package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/container"
	"github.com/peapod-cri/peapod/sandbox"
)

// Streaming is what the server needs of the streaming package.
type Streaming interface {
	GetExec(*runtime.ExecRequest) (*runtime.ExecResponse, error)
	GetAttach(*runtime.AttachRequest) (*runtime.AttachResponse, error)
	GetPortForward(*runtime.PortForwardRequest) (*runtime.PortForwardResponse, error)
}

// Exec returns the URL of a streaming exec session in a running container.
func (s *Service) Exec(ctx context.Context, r *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	if r.GetContainerId() == "" || len(r.GetCmd()) == 0 {
		return nil, fmt.Errorf("Exec needs a container ID and a command: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.containers.Get(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State != container.StateRunning {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	r.ContainerId = c.ID // a prefix may have been given
	return s.streaming.GetExec(r)
}

// Attach returns the URL of a streaming session attached to the stdio of a
// running container. A terminal cannot be attached as separate streams, nor
// separate streams as a terminal: tty must be the container's own.
func (s *Service) Attach(ctx context.Context, r *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("Attach: no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	if !r.GetStdin() && !r.GetStdout() && !r.GetStderr() {
		return nil, fmt.Errorf("Attach to container %s: one of stdin, stdout and stderr must be asked for: %w", r.GetContainerId(), errdefs.ErrInvalidArgument)
	}
	if r.GetTty() && r.GetStderr() {
		return nil, fmt.Errorf("Attach to container %s: a terminal has no separate stderr: %w", r.GetContainerId(), errdefs.ErrInvalidArgument)
	}
	c, err := s.containers.Get(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State != container.StateRunning {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if tty := c.Config.GetTty(); r.GetTty() != tty {
		return nil, fmt.Errorf("Attach to container %s with tty=%t, but the container's tty is %t: %w", c.ID, r.GetTty(), tty, errdefs.ErrInvalidArgument)
	}
	r.ContainerId = c.ID // a prefix may have been given
	return s.streaming.GetAttach(r)
}

// PortForward returns the URL of a port-forward session into a ready pod.
func (s *Service) PortForward(ctx context.Context, r *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("PortForward: no pod sandbox ID given: %w", errdefs.ErrInvalidArgument)
	}
	sb, err := s.sandboxes.Get(ctx, r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb.State != sandbox.StateReady {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	r.PodSandboxId = sb.ID
	return s.streaming.GetPortForward(r)
}
