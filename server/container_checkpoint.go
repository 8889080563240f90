package server

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// peapod does not checkpoint or restore. The CRI calls for it answer
// clearly why: without CRIU on the node they cannot be met here
// (FailedPrecondition); with it, the feature is missing (Unimplemented).
// Requests naming nothing, or something unknown, are refused first.

// CheckpointContainer refuses to checkpoint a container.
func (s *Service) CheckpointContainer(ctx context.Context, r *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("CheckpointContainer: no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := s.containers.Get(ctx, r.GetContainerId()); err != nil {
		return nil, err
	}
	return nil, checkpointRefusal("CheckpointContainer")
}

// CheckpointPod refuses to checkpoint a pod.
func (s *Service) CheckpointPod(ctx context.Context, r *runtime.CheckpointPodRequest) (*runtime.CheckpointPodResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("CheckpointPod: no pod sandbox ID given: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := s.sandboxes.Get(ctx, r.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return nil, checkpointRefusal("CheckpointPod")
}

// RestorePod refuses to restore a pod.
func (s *Service) RestorePod(_ context.Context, r *runtime.RestorePodRequest) (*runtime.RestorePodResponse, error) {
	if r.GetCheckpointPath() == "" || r.GetConfig() == nil {
		return nil, fmt.Errorf("RestorePod: needs a checkpoint path and a pod config: %w", errdefs.ErrInvalidArgument)
	}
	return nil, checkpointRefusal("RestorePod")
}

func checkpointRefusal(method string) error {
	if _, err := exec.LookPath("criu"); err != nil {
		return fmt.Errorf("%s: checkpoints need CRIU, which is not installed on this node: %w", method, errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("%s: peapod does not checkpoint or restore: %w", method, errdefs.ErrNotImplemented)
}
