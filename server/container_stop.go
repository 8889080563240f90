package server

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer stops a running container with its stop signal, then
// SIGKILL after the timeout. Stopping an unknown or stopped container succeeds.
func (s *Service) StopContainer(ctx context.Context, r *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("StopContainer: no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.containers.Stop(ctx, r.GetContainerId(), time.Duration(r.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}

// RemoveContainer removes a container, killing it if it runs. Removing an
// unknown container succeeds.
func (s *Service) RemoveContainer(ctx context.Context, r *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("RemoveContainer: no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.containers.Remove(ctx, r.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}
