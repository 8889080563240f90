package container

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/hostcaps"
)

// What the kubelet v1.34 sends for a Burstable container on a cgroup v1
// node with 2 MiB and 1 GiB huge pages and swap accounting.
func kubeletResources() *runtime.LinuxContainerResources {
	return &runtime.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512,
		MemoryLimitInBytes: 128 << 20, MemorySwapLimitInBytes: 128 << 20,
		OomScoreAdj: 968,
		HugepageLimits: []*runtime.HugepageLimit{
			{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0},
		},
	}
}

func TestResourceOpts(t *testing.T) {
	v1 := hostcaps.Caps{HugetlbV1: true, Swap: true}
	cases := []struct {
		name          string
		host          hostcaps.Caps
		r             *runtime.LinuxContainerResources
		wantHugepages int
		wantSwap      *int64
		wantUnified   map[string]string
	}{
		{name: "kubelet, v1 with hugetlb and swap", host: v1, r: kubeletResources(),
			wantHugepages: 2, wantSwap: ptr(int64(128 << 20))},
		// The lab machine: the kernel has hugetlb, but no hierarchy is mounted.
		{name: "kubelet, v1 without a hugetlb hierarchy", host: hostcaps.Caps{Swap: true}, r: kubeletResources(),
			wantHugepages: 0, wantSwap: ptr(int64(128 << 20))},
		{name: "swap asked, no swap accounting", host: hostcaps.Caps{HugetlbV1: true}, r: kubeletResources(),
			wantHugepages: 2},
		{name: "memory limit alone means no swap", host: v1, r: &runtime.LinuxContainerResources{MemoryLimitInBytes: 64 << 20},
			wantSwap: ptr(int64(64 << 20))},
		{name: "memory limit alone, no swap accounting", host: hostcaps.Caps{}, r: &runtime.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}},
		{name: "unified on v1 is left out", host: v1, r: &runtime.LinuxContainerResources{Unified: map[string]string{"memory.high": "1000000"}}},
		{name: "unified on v2", host: hostcaps.Caps{CgroupV2: true}, r: &runtime.LinuxContainerResources{Unified: map[string]string{"memory.high": "1000000"}},
			wantUnified: map[string]string{"memory.high": "1000000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &oci.Spec{Linux: &specs.Linux{}, Process: &specs.Process{}}
			if err := resourceOpts("c1", tc.r, tc.host, "/kubepods/pod1")(context.Background(), nil, nil, s); err != nil {
				t.Fatal(err)
			}
			res := s.Linux.Resources
			if got := len(res.HugepageLimits); got != tc.wantHugepages {
				t.Errorf("hugepage limits = %v, want %d", res.HugepageLimits, tc.wantHugepages)
			}
			if !equalPtr(res.Memory.Swap, tc.wantSwap) {
				t.Errorf("swap = %v, want %v", deref(res.Memory.Swap), deref(tc.wantSwap))
			}
			if len(res.Unified) != len(tc.wantUnified) {
				t.Errorf("unified = %v, want %v", res.Unified, tc.wantUnified)
			}
			for k, v := range tc.wantUnified {
				if res.Unified[k] != v {
					t.Errorf("unified[%s] = %q, want %q", k, res.Unified[k], v)
				}
			}
			if tc.r.GetCpuShares() != 0 && deref(res.CPU.Shares) != uint64(tc.r.GetCpuShares()) {
				t.Errorf("cpu shares = %v, want %d", deref(res.CPU.Shares), tc.r.GetCpuShares())
			}
			if tc.r.GetMemoryLimitInBytes() != 0 && deref(res.Memory.Limit) != tc.r.GetMemoryLimitInBytes() {
				t.Errorf("memory limit = %v, want %d", deref(res.Memory.Limit), tc.r.GetMemoryLimitInBytes())
			}
		})
	}
}

// An update changes what it sets and keeps the rest, as containerd's CRI
// applies it; repeated updates do not pile up hugepage limits.
func TestResourceOptsUpdate(t *testing.T) {
	host := hostcaps.Caps{HugetlbV1: true, Swap: true}
	s := &oci.Spec{Linux: &specs.Linux{}, Process: &specs.Process{}}
	apply := func(r *runtime.LinuxContainerResources) {
		t.Helper()
		if err := resourceOpts("c1", r, host, "/")(context.Background(), nil, nil, s); err != nil {
			t.Fatal(err)
		}
	}
	apply(kubeletResources())
	apply(kubeletResources())
	apply(&runtime.LinuxContainerResources{CpuQuota: 20000})
	res := s.Linux.Resources
	if len(res.HugepageLimits) != 2 {
		t.Errorf("hugepage limits after two updates = %v, want 2", res.HugepageLimits)
	}
	if deref(res.CPU.Quota) != 20000 || deref(res.CPU.Period) != 100000 || deref(res.Memory.Limit) != 128<<20 {
		t.Errorf("after a quota update: quota %v period %v memory %v; want 20000, 100000, %d",
			deref(res.CPU.Quota), deref(res.CPU.Period), deref(res.Memory.Limit), 128<<20)
	}
}

func TestOOMScoreAdjOpt(t *testing.T) {
	cases := []struct {
		name string
		host hostcaps.Caps
		want int64
		got  int
	}{
		{name: "may lower", host: hostcaps.Caps{LowerOOMScore: true}, want: -997, got: -997},
		{name: "may not lower", host: hostcaps.Caps{}, want: -997, got: 0},
		{name: "may not lower, own score above zero", host: hostcaps.Caps{OwnOOMScoreAdj: 100}, want: -997, got: 100},
		{name: "raising is always allowed", host: hostcaps.Caps{}, want: 1000, got: 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &oci.Spec{}
			r := &runtime.LinuxContainerResources{OomScoreAdj: tc.want}
			if err := oomScoreAdjOpt(r, tc.host)(context.Background(), nil, nil, s); err != nil {
				t.Fatal(err)
			}
			if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != tc.got {
				t.Fatalf("oom_score_adj = %v, want %d", s.Process.OOMScoreAdj, tc.got)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
