//go:build integration

package integration

import (
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

	if _, err := rt.UpdateContainerResources(podCtx(t), &runtime.UpdateContainerResourcesRequest{ContainerId: "no-such-container", Linux: res}); err == nil {
		t.Error("UpdateContainerResources of an unknown container succeeded")
	}
	_, err := rt.UpdateContainerResources(podCtx(t), &runtime.UpdateContainerResourcesRequest{Linux: res})
	wantCode(t, "UpdateContainerResources without an ID", err, codes.InvalidArgument)
}
