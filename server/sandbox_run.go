package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RunPodSandbox creates and starts a pod sandbox: its network namespace and
// CNI network, and the pause container holding the pod's namespaces.
func (s *Service) RunPodSandbox(ctx context.Context, r *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	if r.GetConfig() == nil {
		return nil, fmt.Errorf("RunPodSandbox: no config given: %w", errdefs.ErrInvalidArgument)
	}
	id, err := s.sandboxes.Run(ctx, r.GetConfig(), r.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}
