package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer creates a container in a pod sandbox.
func (s *Service) CreateContainer(ctx context.Context, r *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	if r.GetPodSandboxId() == "" || r.GetConfig() == nil {
		return nil, fmt.Errorf("CreateContainer needs a pod sandbox ID and a config: %w", errdefs.ErrInvalidArgument)
	}
	id, err := s.containers.Create(ctx, r.GetPodSandboxId(), r.GetConfig())
	if err != nil {
		return nil, err
	}
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// StartContainer starts a created container.
func (s *Service) StartContainer(ctx context.Context, r *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("StartContainer: no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.containers.Start(ctx, r.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtime.StartContainerResponse{}, nil
}
