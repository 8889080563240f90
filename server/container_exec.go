package server

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ExecSync runs a command in a running container and returns its output
// and exit code; a timed-out command is killed.
func (s *Service) ExecSync(ctx context.Context, r *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	if r.GetContainerId() == "" || len(r.GetCmd()) == 0 {
		return nil, fmt.Errorf("ExecSync needs a container ID and a command: %w", errdefs.ErrInvalidArgument)
	}
	res, err := s.containers.ExecSync(ctx, r.GetContainerId(), r.GetCmd(), time.Duration(r.GetTimeout())*time.Second)
	if err != nil {
		return nil, err
	}
	return &runtime.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

// ReopenContainerLog makes a running container write to a fresh log file
// after the kubelet rotated the old one.
func (s *Service) ReopenContainerLog(ctx context.Context, r *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("ReopenContainerLog: no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.containers.ReopenLog(ctx, r.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}
