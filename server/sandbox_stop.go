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
	sb, err := s.sandboxes.Get(ctx, r.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtime.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	// No container can be created in it from now on: the list is complete.
	if err := s.sandboxes.Retire(ctx, sb.ID); err != nil {
		return nil, err
	}
	ctrs, err := s.containers.InSandbox(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	for _, c := range ctrs {
		// The kubelet stopped them gracefully already; what still runs is killed.
		if err := s.containers.Stop(ctx, c.ID, 0); err != nil {
			return nil, fmt.Errorf("stopping container %s of sandbox %s: %w", c.ID, sb.ID, err)
		}
	}
	if err := s.sandboxes.Stop(ctx, sb.ID); err != nil {
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
	sb, err := s.sandboxes.Get(ctx, r.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtime.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	// No container can be created in it from now on: the list is complete.
	if err := s.sandboxes.Retire(ctx, sb.ID); err != nil {
		return nil, err
	}
	ctrs, err := s.containers.InSandbox(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	for _, c := range ctrs {
		if err := s.containers.Remove(ctx, c.ID); err != nil {
			return nil, fmt.Errorf("removing container %s of sandbox %s: %w", c.ID, sb.ID, err)
		}
	}
	if err := s.sandboxes.Remove(ctx, sb.ID); err != nil {
		return nil, err
	}
	return &runtime.RemovePodSandboxResponse{}, nil
}
