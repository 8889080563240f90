package container

import (
	"context"
	"maps"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/hostcaps"
)

// resourceOpts applies a container's CPU, memory, hugepage and unified
// cgroup settings to its spec, each as far as the host can honour it:
// the kubelet asks for hugepage limits of every page size the kernel knows
// and a swap limit wherever it finds swap accounting, and runc fails a
// container whose limits the host cannot set. What the host cannot honour
// is left out, as containerd's CRI does. parent is the container's cgroup
// parent (for the hugetlb controller on cgroup v2).
//
// Fields left zero keep what the spec has, so that an update applies to the
// container's current spec as containerd's CRI applies it.
func resourceOpts(id string, r *runtime.LinuxContainerResources, host hostcaps.Caps, parent string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if r == nil {
			return nil
		}
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		res := s.Linux.Resources
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		if res.Memory == nil {
			res.Memory = &specs.LinuxMemory{}
		}
		if p := uint64(r.GetCpuPeriod()); p != 0 {
			res.CPU.Period = &p
		}
		if q := r.GetCpuQuota(); q != 0 {
			res.CPU.Quota = &q
		}
		if sh := uint64(r.GetCpuShares()); sh != 0 {
			res.CPU.Shares = &sh
		}
		if cpus := r.GetCpusetCpus(); cpus != "" {
			res.CPU.Cpus = cpus
		}
		if mems := r.GetCpusetMems(); mems != "" {
			res.CPU.Mems = mems
		}
		limit, swap := r.GetMemoryLimitInBytes(), r.GetMemorySwapLimitInBytes()
		if limit != 0 {
			res.Memory.Limit = &limit
			// No swap beyond the memory limit unless asked for.
			if swap == 0 && host.Swap {
				res.Memory.Swap = &limit
			}
		}
		if swap != 0 {
			if host.Swap {
				res.Memory.Swap = &swap
			} else {
				klog.V(2).InfoS("Leaving out the swap limit: the host has no swap accounting", "container", id)
			}
		}
		if hp := r.GetHugepageLimits(); len(hp) > 0 {
			if host.Hugetlb(parent) {
				res.HugepageLimits = res.HugepageLimits[:0]
				for _, l := range hp {
					res.HugepageLimits = append(res.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: l.GetPageSize(), Limit: l.GetLimit()})
				}
			} else {
				klog.V(2).InfoS("Leaving out hugepage limits: the host's hugetlb cgroup controller is not usable", "container", id)
			}
		}
		if unified := r.GetUnified(); len(unified) > 0 {
			if host.CgroupV2 {
				if res.Unified == nil {
					res.Unified = map[string]string{}
				}
				maps.Copy(res.Unified, unified)
			} else {
				klog.V(2).InfoS("Leaving out unified (cgroup v2) resources on a cgroup v1 host", "container", id)
			}
		}
		return nil
	}
}

// oomScoreAdjOpt sets the process's oom_score_adj to what r asks, raised to
// peapod's own where peapod may not lower it.
func oomScoreAdjOpt(r *runtime.LinuxContainerResources, host hostcaps.Caps) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		adj := host.OOMScoreAdj(int(r.GetOomScoreAdj()))
		s.Process.OOMScoreAdj = &adj
		return nil
	}
}
