package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/cgroupstats"
	"github.com/peapod-cri/peapod/container"
	"github.com/peapod-cri/peapod/sandbox"
)

// PodSandboxStats reports a pod's CPU, memory and network usage with its
// containers' stats.
func (s *Service) PodSandboxStats(ctx context.Context, r *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("PodSandboxStats: no pod sandbox ID given: %w", errdefs.ErrInvalidArgument)
	}
	sb, err := s.sandboxes.Get(ctx, r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	ctrs, err := s.containers.InSandbox(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	st, err := s.podSandboxStats(ctx, sb, ctrs)
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports the usage of the pods a filter selects.
func (s *Service) ListPodSandboxStats(ctx context.Context, r *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	all, err := s.sandboxes.List(ctx)
	if err != nil {
		return nil, err
	}
	bySandbox, err := s.containersBySandbox(ctx)
	if err != nil {
		return nil, err
	}
	f := r.GetFilter()
	out := make([]*runtime.PodSandboxStats, 0, len(all))
	for _, sb := range all {
		if f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) || !labelsMatch(sb.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		st, err := s.podSandboxStats(ctx, sb, bySandbox[sb.ID])
		if err != nil {
			klog.ErrorS(err, "Leaving a pod out of ListPodSandboxStats", "id", sb.ID)
			continue
		}
		out = append(out, st)
	}
	return &runtime.ListPodSandboxStatsResponse{Stats: out}, nil
}

// containersBySandbox lists every container once, by pod: listing each
// pod's containers apart would make a call over all pods quadratic.
func (s *Service) containersBySandbox(ctx context.Context) (map[string][]container.Container, error) {
	ctrs, err := s.containers.List(ctx)
	if err != nil {
		return nil, err
	}
	bySandbox := map[string][]container.Container{}
	for _, c := range ctrs {
		bySandbox[c.SandboxID] = append(bySandbox[c.SandboxID], c)
	}
	return bySandbox, nil
}

// podSandboxStats measures the pod, whose containers are ctrs, through its
// cgroup when the kubelet gave it one (the pod cgroup holds all its
// containers), else as the sum of its containers.
func (s *Service) podSandboxStats(ctx context.Context, sb sandbox.Sandbox, ctrs []container.Container) (*runtime.PodSandboxStats, error) {
	ts := time.Now().UnixNano()
	u64 := func(v uint64) *runtime.UInt64Value { return &runtime.UInt64Value{Value: v} }
	linux := &runtime.LinuxPodSandboxStats{}
	var cpu, workingSet, usage uint64
	for _, c := range ctrs {
		cs, err := s.containerStats(ctx, c)
		if err != nil {
			klog.ErrorS(err, "Leaving a container out of its pod's stats", "id", c.ID, "pod", sb.ID)
			continue
		}
		linux.Containers = append(linux.Containers, cs)
		cpu += cs.GetCpu().GetUsageCoreNanoSeconds().GetValue()
		workingSet += cs.GetMemory().GetWorkingSetBytes().GetValue()
		usage += cs.GetMemory().GetUsageBytes().GetValue()
	}
	if parent := sb.Config.GetLinux().GetCgroupParent(); parent != "" && sb.State == sandbox.StateReady {
		cg, err := cgroupstats.Read(parent)
		switch {
		case err == nil:
			cpu, workingSet, usage = cg.CPUUsageNanos, cg.MemoryWorkingSet, cg.MemoryUsage
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("stats of pod sandbox %s: %w", sb.ID, err)
		}
	}
	linux.Cpu = &runtime.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: u64(cpu)}
	linux.Memory = &runtime.MemoryUsage{Timestamp: ts, WorkingSetBytes: u64(workingSet), UsageBytes: u64(usage)}

	ifaces, err := s.sandboxes.NetworkStats(&sb)
	if err != nil {
		klog.V(4).InfoS("Reading pod network stats", "id", sb.ID, "err", err) // the pod is going away
	}
	if len(ifaces) > 0 {
		linux.Network = &runtime.NetworkUsage{Timestamp: ts}
		for _, i := range ifaces {
			is := &runtime.NetworkInterfaceUsage{
				Name: i.Name, RxBytes: u64(i.RxBytes), RxErrors: u64(i.RxErrors), TxBytes: u64(i.TxBytes), TxErrors: u64(i.TxErrors),
			}
			if i.Name == "eth0" {
				linux.Network.DefaultInterface = is
			} else {
				linux.Network.Interfaces = append(linux.Network.Interfaces, is)
			}
		}
	}
	return &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{
			Id: sb.ID, Metadata: sb.Config.GetMetadata(), Labels: sb.Config.GetLabels(), Annotations: sb.Config.GetAnnotations(),
		},
		Linux: linux,
	}, nil
}
