package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/container"
)

// ContainerStats reports one container's CPU, memory, swap and writable
// layer usage.
func (s *Service) ContainerStats(ctx context.Context, r *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("ContainerStats: no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.containers.Get(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.containerStats(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the usage of the containers a filter selects.
func (s *Service) ListContainerStats(ctx context.Context, r *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	all, err := s.containers.List(ctx)
	if err != nil {
		return nil, err
	}
	f := r.GetFilter()
	out := make([]*runtime.ContainerStats, 0, len(all))
	for _, c := range all {
		if f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()) ||
			f.GetPodSandboxId() != "" && !strings.HasPrefix(c.SandboxID, f.GetPodSandboxId()) ||
			!labelsMatch(c.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		st, err := s.containerStats(ctx, c)
		if err != nil {
			// One container whose cgroup cannot be read (it is going away,
			// say) must not hide every other container's usage.
			klog.ErrorS(err, "Leaving a container out of ListContainerStats", "id", c.ID)
			continue
		}
		out = append(out, st)
	}
	return &runtime.ListContainerStatsResponse{Stats: out}, nil
}

func (s *Service) containerStats(ctx context.Context, c container.Container) (*runtime.ContainerStats, error) {
	st, err := s.containers.Stats(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", c.ID, err)
	}
	ts := st.Timestamp.UnixNano()
	u64 := func(v uint64) *runtime.UInt64Value { return &runtime.UInt64Value{Value: v} }
	out := &runtime.ContainerStats{
		Attributes: &runtime.ContainerAttributes{
			Id: c.ID, Metadata: c.Config.GetMetadata(), Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
		},
		Cpu: &runtime.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: u64(st.CPUUsageNanos)},
		Memory: &runtime.MemoryUsage{
			Timestamp: ts, WorkingSetBytes: u64(st.MemoryWorkingSet), UsageBytes: u64(st.MemoryUsage),
			RssBytes: u64(st.MemoryRSS), PageFaults: u64(st.PageFaults), MajorPageFaults: u64(st.MajorPageFaults),
		},
		WritableLayer: &runtime.FilesystemUsage{
			Timestamp: ts, FsId: &runtime.FilesystemIdentifier{Mountpoint: st.LayerMountpoint},
			UsedBytes: u64(st.LayerBytes), InodesUsed: u64(st.LayerInodes),
		},
	}
	if st.CPUNanoCores != nil {
		out.Cpu.UsageNanoCores = u64(*st.CPUNanoCores)
	}
	if st.HasSwap {
		out.Swap = &runtime.SwapUsage{Timestamp: ts, SwapUsageBytes: u64(st.SwapUsage)}
	}
	return out, nil
}
