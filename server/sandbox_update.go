package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdatePodSandboxResources is the kubelet telling the runtime a pod's new
// resources after an in-place resize. With the cgroupfs driver the kubelet
// resizes the pod's cgroup itself and each container's through
// UpdateContainerResources, so for a known pod there is nothing left to do.
func (s *Service) UpdatePodSandboxResources(ctx context.Context, r *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("UpdatePodSandboxResources: no pod sandbox ID given: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := s.sandboxes.Get(ctx, r.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtime.UpdatePodSandboxResourcesResponse{}, nil
}
