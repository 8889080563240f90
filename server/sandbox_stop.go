package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopPodSandbox stops a pod sandbox's containers and pause container and
// tears down its network. Stopping an unknown or stopped sandbox succeeds.
func (s *Service) StopPodSandbox(ctx context.Context, r *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("StopPodSandbox: no pod sandbox ID given: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.sandboxes.Stop(ctx, r.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes a pod sandbox, stopping it first if it runs.
// Removing an unknown sandbox succeeds.
func (s *Service) RemovePodSandbox(ctx context.Context, r *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("RemovePodSandbox: no pod sandbox ID given: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.sandboxes.Remove(ctx, r.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtime.RemovePodSandboxResponse{}, nil
}
