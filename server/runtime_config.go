package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/network"
)

// RuntimeConfig tells the kubelet which cgroup driver peapod's containers
// use: cgroupfs, the one driver that works without systemd as PID 1.
func (s *Service) RuntimeConfig(context.Context, *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{
		CgroupDriver: runtime.CgroupDriver_CGROUPFS,
	}}, nil
}

// UpdateRuntimeConfig takes the node's pod CIDR from the kubelet: pods set
// up afterwards get their addresses from it (the CNI ipRanges capability).
// An empty CIDR changes nothing.
func (s *Service) UpdateRuntimeConfig(_ context.Context, r *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	cidrs, err := network.ParsePodCIDRs(r.GetRuntimeConfig().GetNetworkConfig().GetPodCidr())
	if err != nil {
		return nil, fmt.Errorf("UpdateRuntimeConfig: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(cidrs) == 0 {
		return &runtime.UpdateRuntimeConfigResponse{}, nil
	}
	if err := s.network.SetPodCIDRs(cidrs); err != nil {
		return nil, fmt.Errorf("UpdateRuntimeConfig: keeping pod CIDRs: %w", err)
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}
