//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateContainerResources changes a running container's cgroup limits in
// place and reports them in ContainerStatus, also after a peapod restart.
func TestUpdateContainerResources(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("resize")
	sbID := runPod(t, rt, cfg)
	id := startContainer(t, rt, sbID, cfg, busybox("app", "sleep 3600"))

	cgroup := func(controller, file string) string {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, e.ns, id, file))
		if err != nil {
			t.Fatalf("reading the container's cgroup: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	res := &runtime.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512}
	if _, err := rt.UpdateContainerResources(podCtx(t), &runtime.UpdateContainerResourcesRequest{ContainerId: id, Linux: res}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if got := cgroup("memory", "memory.limit_in_bytes"); got != "67108864" {
		t.Errorf("memory limit = %s, want 67108864", got)
	}
	if got := cgroup("cpu", "cpu.shares"); got != "512" {
		t.Errorf("cpu shares = %s, want 512", got)
	}
	check := func(when string) {
		st := containerStatus(t, rt, id).Status
		if got := st.GetResources().GetLinux(); got.GetMemoryLimitInBytes() != 64<<20 || got.GetCpuShares() != 512 {
			t.Errorf("%s: ContainerStatus resources = %v, want 64 MiB and 512 shares", when, got)
		}
	}
	check("after the update")

	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	rt, _ = e.serve()
	check("after a restart")

	_, err := rt.UpdateContainerResources(podCtx(t), &runtime.UpdateContainerResourcesRequest{ContainerId: "no-such-container", Linux: res})
	wantCode(t, "UpdateContainerResources of an unknown container", err, codes.NotFound)
	_, err = rt.UpdateContainerResources(podCtx(t), &runtime.UpdateContainerResourcesRequest{Linux: res})
	wantCode(t, "UpdateContainerResources without an ID", err, codes.InvalidArgument)
}

// PodSandboxStats and ListPodSandboxStats report a pod's usage, its network
// interface and its containers' stats.
func TestPodSandboxStats(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("stats")
	sbID := runPod(t, rt, cfg)
	ctrID := startContainer(t, rt, sbID, cfg, busybox("busy", "while :; do :; done"))

	eventually(t, 20*time.Second, "pod CPU usage", func() error {
		resp, err := rt.PodSandboxStats(podCtx(t), &runtime.PodSandboxStatsRequest{PodSandboxId: sbID})
		if err != nil {
			return err
		}
		lx := resp.GetStats().GetLinux()
		switch {
		case resp.GetStats().GetAttributes().GetId() != sbID:
			return fmt.Errorf("attributes %v", resp.GetStats().GetAttributes())
		case lx.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0:
			return fmt.Errorf("no CPU usage yet")
		case lx.GetMemory().GetWorkingSetBytes() == nil:
			return fmt.Errorf("no memory stats")
		case lx.GetNetwork().GetDefaultInterface().GetName() != "eth0":
			return fmt.Errorf("network %v, want eth0 as the default interface", lx.GetNetwork())
		case len(lx.GetContainers()) != 1 || lx.GetContainers()[0].GetAttributes().GetId() != ctrID:
			return fmt.Errorf("containers %v, want %s", lx.GetContainers(), ctrID)
		}
		return nil
	})

	list, err := rt.ListPodSandboxStats(podCtx(t), &runtime.ListPodSandboxStatsRequest{
		Filter: &runtime.PodSandboxStatsFilter{LabelSelector: map[string]string{"pod": "stats"}},
	})
	if err != nil || len(list.GetStats()) != 1 || list.GetStats()[0].GetAttributes().GetId() != sbID {
		t.Fatalf("ListPodSandboxStats by label = %v, %v; want only %s", list.GetStats(), err, sbID)
	}
	none, err := rt.ListPodSandboxStats(podCtx(t), &runtime.ListPodSandboxStatsRequest{
		Filter: &runtime.PodSandboxStatsFilter{LabelSelector: map[string]string{"pod": "other"}},
	})
	if err != nil || len(none.GetStats()) != 0 {
		t.Fatalf("ListPodSandboxStats with a non-matching label = %v, %v; want none", none.GetStats(), err)
	}
}
