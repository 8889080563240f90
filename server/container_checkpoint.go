package server

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CheckpointContainer writes a checkpoint archive of a running container,
// which keeps running (forensic container checkpointing). It needs CRIU on
// the node: without it the answer is FailedPrecondition.
func (s *Service) CheckpointContainer(ctx context.Context, r *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("CheckpointContainer: no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	if r.GetLocation() == "" {
		return nil, fmt.Errorf("CheckpointContainer: no location for the archive given: %w", errdefs.ErrInvalidArgument)
	}
	if r.GetTimeout() < 0 {
		return nil, fmt.Errorf("CheckpointContainer: negative timeout %d: %w", r.GetTimeout(), errdefs.ErrInvalidArgument)
	}
	c, err := s.containers.Get(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if t := r.GetTimeout(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	if err := s.containers.Checkpoint(ctx, c.ID, r.GetLocation(), s.containerStatus(ctx, c)); err != nil {
		return nil, err
	}
	return &runtime.CheckpointContainerResponse{}, nil
}

// peapod checkpoints containers, not whole pods: CheckpointPod and
// RestorePod answer Unimplemented once their request is valid.

// CheckpointPod refuses to checkpoint a pod.
func (s *Service) CheckpointPod(ctx context.Context, r *runtime.CheckpointPodRequest) (*runtime.CheckpointPodResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("CheckpointPod: no pod sandbox ID given: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := s.sandboxes.Get(ctx, r.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("CheckpointPod: peapod checkpoints containers (CheckpointContainer), not pods: %w", errdefs.ErrNotImplemented)
}

// RestorePod refuses to restore a pod.
func (s *Service) RestorePod(_ context.Context, r *runtime.RestorePodRequest) (*runtime.RestorePodResponse, error) {
	if r.GetCheckpointPath() == "" || r.GetConfig() == nil {
		return nil, fmt.Errorf("RestorePod: needs a checkpoint path and a pod config: %w", errdefs.ErrInvalidArgument)
	}
	return nil, fmt.Errorf("RestorePod: peapod does not restore pods: %w", errdefs.ErrNotImplemented)
}
