package server

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CheckpointContainer would checkpoint a container with CRIU. peapod does
// not checkpoint: without CRIU on the node the request cannot be met here
// (FailedPrecondition); with it, the feature is still missing (Unimplemented).
func (s *Service) CheckpointContainer(ctx context.Context, r *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("CheckpointContainer: no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := s.containers.Get(ctx, r.GetContainerId()); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("criu"); err != nil {
		return nil, fmt.Errorf("CheckpointContainer: checkpointing needs CRIU, which is not installed on this node: %w", errdefs.ErrFailedPrecondition)
	}
	return nil, fmt.Errorf("CheckpointContainer: peapod does not checkpoint containers: %w", errdefs.ErrNotImplemented)
}
