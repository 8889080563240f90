//go:build integration

package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runc "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRuntimeHandlers runs a pod with each handler Status advertises: runc,
// crun where it is installed and works, and a configured one whose runtime
// is Debian's runc; an unknown handler is refused.
func TestRuntimeHandlers(t *testing.T) {
	e := newPodEnv(t)
	e.config = "[runtimes.debian-runc]\nbinary = \"/usr/bin/runc\"\n"
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)

	st, err := rt.Status(callCtx(t), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range st.GetRuntimeHandlers() {
		names = append(names, h.GetName())
	}
	want := []string{"", "debian-runc", "runc"}
	if slices.Contains(names, "crun") {
		want = []string{"", "crun", "debian-runc", "runc"}
	} else if _, err := exec.LookPath("crun"); err == nil {
		// Debian 12's crun 1.8 cannot run a container on a host with
		// hybrid cgroups, as the lab's is ("cgroups in hybrid mode not
		// supported, drop all controllers from cgroupv2"), and the lab
		// must not move the hierarchies: peapod probes it, leaves the
		// handler out, and must say why.
		if log := e.d.stderr.String(); !strings.Contains(log, "crun is installed but cannot run containers here") {
			t.Errorf("crun is installed but neither advertised nor said to fail in peapod's log:\n%s", log)
		}
		t.Logf("crun is installed but not advertised: it cannot run containers on this host (see peapod's log)")
	}
	if !slices.Equal(names, want) {
		t.Fatalf("Status runtime handlers = %q, want %q", names, want)
	}
	if !st.GetFeatures().GetSupplementalGroupsPolicy() {
		t.Error("Status does not advertise SupplementalGroupsPolicy")
	}
	binaries := map[string]string{"crun": "/usr/bin/crun", "debian-runc": "/usr/bin/runc"}

	for _, handler := range want {
		t.Run("handler="+handler, func(t *testing.T) {
			cfg := e.podConfig("rh-" + strings.TrimPrefix(handler+"-x", "-"))
			resp, err := rt.RunPodSandbox(podCtx(t), &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
			if err != nil {
				t.Fatalf("RunPodSandbox(handler %q): %v", handler, err)
			}
			id := resp.PodSandboxId
			if got := sandboxStatus(t, rt, id).GetStatus().GetRuntimeHandler(); got != handler {
				t.Errorf("PodSandboxStatus runtime handler = %q, want %q", got, handler)
			}
			c := startContainer(t, rt, id, cfg, busybox("app", "sleep 1000"))
			if out, code := execSync(t, rt, c, "echo", "hi"); out != "hi\n" || code != 0 {
				t.Errorf("exec in a %q container = %q, %d", handler, out, code)
			}
			// containerd runs the pod and its containers with the handler's runtime.
			if want, ok := binaries[handler]; ok {
				for _, ctr := range []string{id, c} {
					if bin := e.runtimeBinary(ctr); bin != want {
						t.Errorf("%s of handler %s runs with runtime binary %q, want %q", ctr, handler, bin, want)
					}
				}
			}
			if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Fatal(err)
			}
			if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Fatal(err)
			}
		})
	}

	_, err = rt.RunPodSandbox(podCtx(t), &runtime.RunPodSandboxRequest{Config: e.podConfig("rh-bad"), RuntimeHandler: "kata"})
	wantCode(t, "RunPodSandbox with an unknown handler", err, codes.InvalidArgument)
	if err := e.leftovers(""); err != nil {
		t.Error(err)
	}
}

// runtimeBinary is the OCI runtime binary containerd runs a container with
// (the runc shim's BinaryName option), "" for the shim's default.
func (e *podEnv) runtimeBinary(id string) string {
	e.t.Helper()
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	c, err := e.ctrd().ContainerService().Get(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if c.Runtime.Options == nil {
		return ""
	}
	v, err := typeurl.UnmarshalAny(c.Runtime.Options)
	if err != nil {
		e.t.Fatal(err)
	}
	opts, ok := v.(*runc.Options)
	if !ok {
		e.t.Fatalf("runtime options are %T", v)
	}
	return opts.BinaryName
}

// TestUserNamespacePod runs a pod in a user namespace of its own: its
// processes are root inside and an unprivileged ID outside, its root
// filesystem belongs to its root, an ID-mapped volume shows host files as
// their mapped owner, and it keeps all this across a restart of peapod. At
// the end nothing is left: no pinned namespaces, no mounts.
func TestUserNamespacePod(t *testing.T) {
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	st, err := rt.Status(callCtx(t), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.GetRuntimeHandlers()[0].GetFeatures().GetUserNamespaces() {
		t.Fatalf("the default handler does not support user namespaces here (PEAPOD_TEST_RUNC=%q): %v",
			os.Getenv("PEAPOD_TEST_RUNC"), st.GetRuntimeHandlers())
	}

	const hostID = 300000
	mapping := []*runtime.IDMapping{{ContainerId: 0, HostId: hostID, Length: 65536}}
	userns := &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: mapping, Gids: mapping}
	cfg := e.podConfig("userns")
	cfg.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{UsernsOptions: userns},
	}
	id := runPod(t, rt, cfg)

	// A volume with a file owned by uid 5 on disk, mounted ID-mapped: the
	// pod sees it as its uid 5 (unmapped, it would be the overflow uid).
	vol := filepath.Join(e.dir, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(vol, "f"), 5, 5); err != nil {
		t.Fatal(err)
	}
	ccfg := busybox("app", "sleep 1000", &runtime.Mount{
		HostPath: vol, ContainerPath: "/vol", UidMappings: mapping, GidMappings: mapping,
	})
	ccfg.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{UsernsOptions: userns},
	}
	c := startContainer(t, rt, id, cfg, ccfg)

	check := func(when string) {
		t.Helper()
		if out, _ := execSync(t, rt, c, "cat", "/proc/self/uid_map"); strings.Join(strings.Fields(out), " ") != fmt.Sprintf("0 %d 65536", hostID) {
			t.Errorf("%s: uid_map = %q", when, out)
		}
		if out, _ := execSync(t, rt, c, "id", "-u"); out != "0\n" {
			t.Errorf("%s: id -u = %q, want 0", when, out)
		}
		// The image's files belong to the pod's root, so it can write them.
		if out, code := execSync(t, rt, c, "sh", "-c", "stat -c %u /bin && touch /bin/new && echo ok"); out != "0\nok\n" || code != 0 {
			t.Errorf("%s: root filesystem ownership: %q (exit %d)", when, out, code)
		}
		if out, _ := execSync(t, rt, c, "stat", "-c", "%u", "/vol/f"); out != "5\n" {
			t.Errorf("%s: owner of a file of the ID-mapped volume = %q, want 5", when, out)
		}
		// Outside, the container's processes run as the mapped host ID.
		pid := infoPid(t, containerStatus(t, rt, c).GetInfo())
		var stat unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d", pid), &stat); err != nil || stat.Uid != hostID {
			t.Errorf("%s: host uid of the container process = %d (%v), want %d", when, stat.Uid, err, hostID)
		}
	}
	check("running")

	// The user namespace is pinned under the state directory while the pod runs.
	if pins := e.mountsUnderState(); !slices.ContainsFunc(pins, func(p string) bool { return strings.HasSuffix(p, "/userns") }) {
		t.Errorf("no pinned user namespace among the mounts under the state directory: %q", pins)
	}

	e.d.signal(unix.SIGKILL)
	e.d.wait(podTimeout)
	rt, _ = e.serve()
	check("after a restart of peapod")

	if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if pins := e.mountsUnderState(); len(pins) > 0 {
		t.Errorf("mounts under the state directory after StopPodSandbox: %q", pins)
	}
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if err := e.leftovers(id, c); err != nil {
		t.Error(err)
	}
}

// TestUserNamespaceRefusals: what the CRI allows only in other forms is
// InvalidArgument, and leaves nothing behind.
func TestUserNamespaceRefusals(t *testing.T) {
	e := newPodEnv(t)
	rt, _ := e.serve()
	one := []*runtime.IDMapping{{ContainerId: 0, HostId: 300000, Length: 65536}}
	cases := map[string]*runtime.NamespaceOption{
		"container mode":   {UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}},
		"two mappings":     {UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: append(one, one[0]), Gids: one}},
		"ID 0 not mapped":  {UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{ContainerId: 1, HostId: 300000, Length: 10}}, Gids: one}},
		"host network too": {Network: runtime.NamespaceMode_NODE, UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one}},
	}
	for name, ns := range cases {
		cfg := e.podConfig("refused")
		cfg.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: ns}
		_, err := rt.RunPodSandbox(podCtx(t), &runtime.RunPodSandboxRequest{Config: cfg})
		wantCode(t, "RunPodSandbox with "+name, err, codes.InvalidArgument)
	}
	if err := e.leftovers(""); err != nil {
		t.Error(err)
	}
}

// TestRecursiveReadOnlyMount: a recursive read-only volume is read-only
// down to its submounts; a plain read-only one only at its top.
func TestRecursiveReadOnlyMount(t *testing.T) {
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	vol := filepath.Join(e.dir, "rro")
	sub := filepath.Join(vol, "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })

	cfg := e.podConfig("rro")
	id := runPod(t, rt, cfg)
	c := startContainer(t, rt, id, cfg, busybox("app", "sleep 1000",
		&runtime.Mount{HostPath: vol, ContainerPath: "/ro", Readonly: true},
		&runtime.Mount{HostPath: vol, ContainerPath: "/rro", Readonly: true, RecursiveReadOnly: true,
			Propagation: runtime.MountPropagation_PROPAGATION_PRIVATE},
	))
	if _, code := execSync(t, rt, c, "touch", "/ro/sub/f"); code != 0 {
		t.Error("a read-only (not recursive) mount's submount is not writable")
	}
	if _, code := execSync(t, rt, c, "touch", "/ro/f"); code == 0 {
		t.Error("a read-only mount is writable")
	}
	if _, code := execSync(t, rt, c, "touch", "/rro/sub/g"); code == 0 {
		t.Error("a recursive read-only mount's submount is writable")
	}

	// Recursive read-only needs read-only and private propagation.
	_, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: id, SandboxConfig: cfg,
		Config: busybox("bad", "true", &runtime.Mount{HostPath: vol, ContainerPath: "/x", RecursiveReadOnly: true})})
	wantCode(t, "CreateContainer with a writable recursive read-only mount", err, codes.InvalidArgument)
}

// TestSupplementalGroupsPolicy: Strict leaves out the groups the image's
// /etc/group gives the user; ContainerStatus reports the identity.
func TestSupplementalGroupsPolicy(t *testing.T) {
	// critest's image: uid 1000 is in group 50000 by its /etc/group.
	const groupImage = "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, groupImage)
	cfg := e.podConfig("groups")
	id := runPod(t, rt, cfg)
	for policy, want := range map[runtime.SupplementalGroupsPolicy][]string{
		runtime.SupplementalGroupsPolicy_Merge:  {"1000", "1234", "50000"},
		runtime.SupplementalGroupsPolicy_Strict: {"1000", "1234"},
	} {
		name := strings.ToLower(policy.String())
		ccfg := busybox(name, "sleep 1000")
		ccfg.Image.Image = groupImage
		ccfg.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{
			RunAsUser: &runtime.Int64Value{Value: 1000}, SupplementalGroups: []int64{1234}, SupplementalGroupsPolicy: policy,
		}
		c := startContainer(t, rt, id, cfg, ccfg)
		out, _ := execSync(t, rt, c, "id", "-G")
		got := strings.Fields(out)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: id -G = %q, want %q", policy, out, want)
		}
		u := containerStatus(t, rt, c).GetStatus().GetUser().GetLinux()
		var groups []string
		for _, g := range u.GetSupplementalGroups() {
			groups = append(groups, fmt.Sprint(g))
		}
		slices.Sort(groups)
		if u.GetUid() != 1000 || u.GetGid() != 1000 || !slices.Equal(groups, want) {
			t.Errorf("%s: ContainerStatus user = %v, want uid 1000 gid 1000 groups %q", policy, u, want)
		}
	}
}

// TestPodCIDRFromKubelet: the pod CIDR the kubelet gives with
// UpdateRuntimeConfig is where pods get their addresses, also after a
// restart of peapod; the other kubelet-facing updates answer as they should.
func TestPodCIDRFromKubelet(t *testing.T) {
	// A network like a kubelet-managed node's: its addresses come only
	// from the pod CIDR the runtime is given. Its bridge has no route off
	// the machine, like the lab's, and goes when the test ends.
	const bridge, cidr = "peapod-it-cidr", "10.89.77.0/24"
	e := newPodEnv(t)
	e.cniConfDir = filepath.Join(e.dir, "net.d")
	conf := `{"cniVersion": "1.0.0", "name": "peapod-it-cidr", "plugins": [{"type": "bridge", "bridge": "` + bridge + `",
		"isGateway": true, "ipMasq": false, "capabilities": {"ipRanges": true}, "ipam": {"type": "host-local"}}]}`
	if err := os.MkdirAll(e.cniConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.cniConfDir, "10-cidr.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", bridge).Run() })
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	_, podNet, _ := net.ParseCIDR(cidr)
	if _, err := rt.UpdateRuntimeConfig(callCtx(t), &runtime.UpdateRuntimeConfigRequest{RuntimeConfig: &runtime.RuntimeConfig{
		NetworkConfig: &runtime.NetworkConfig{PodCidr: cidr}}}); err != nil {
		t.Fatal(err)
	}
	_, err := rt.UpdateRuntimeConfig(callCtx(t), &runtime.UpdateRuntimeConfigRequest{RuntimeConfig: &runtime.RuntimeConfig{
		NetworkConfig: &runtime.NetworkConfig{PodCidr: "10.89.77.0"}}})
	wantCode(t, "UpdateRuntimeConfig with a bad CIDR", err, codes.InvalidArgument)

	podIP := func(id string) net.IP {
		t.Helper()
		return net.ParseIP(sandboxStatus(t, rt, id).GetStatus().GetNetwork().GetIp())
	}
	cfg := e.podConfig("cidr-a")
	a := runPod(t, rt, cfg)
	if ip := podIP(a); !podNet.Contains(ip) {
		t.Errorf("pod IP %s is not in the pod CIDR %s", ip, cidr)
	}

	e.d.signal(unix.SIGKILL)
	e.d.wait(podTimeout)
	rt, _ = e.serve()
	b := runPod(t, rt, e.podConfig("cidr-b"))
	if ip := podIP(b); !podNet.Contains(ip) {
		t.Errorf("after a restart, pod IP %s is not in the pod CIDR %s", ip, cidr)
	}

	// In-place pod resize: nothing for the runtime to do with cgroupfs, but
	// the pod must exist.
	if _, err := rt.UpdatePodSandboxResources(callCtx(t), &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: b}); err != nil {
		t.Errorf("UpdatePodSandboxResources: %v", err)
	}
	_, err = rt.UpdatePodSandboxResources(callCtx(t), &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "no-such-pod"})
	wantCode(t, "UpdatePodSandboxResources of an unknown pod", err, codes.NotFound)
}

// TestPodMetrics: ListPodSandboxMetrics reports a running pod and its
// container with real figures, and the streamed lists carry them too.
func TestPodMetrics(t *testing.T) {
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("metrics")
	id := runPod(t, rt, cfg)
	c := startContainer(t, rt, id, cfg, busybox("app", "head -c 20000000 /dev/zero | tail -c 1 >/dev/null; sleep 1000"))

	find := func(ms []*runtime.Metric, name string, labelLast string) *runtime.Metric {
		for _, m := range ms {
			if m.GetName() == name && (labelLast == "" || m.GetLabelValues()[len(m.GetLabelValues())-1] == labelLast) {
				return m
			}
		}
		return nil
	}
	eventually(t, 30*time.Second, "the container's metrics", func() error {
		resp, err := rt.ListPodSandboxMetrics(callCtx(t), &runtime.ListPodSandboxMetricsRequest{})
		if err != nil {
			return err
		}
		for _, pm := range resp.GetPodMetrics() {
			if pm.GetPodSandboxId() != id {
				continue
			}
			if m := find(pm.GetMetrics(), "container_network_receive_bytes_total", "eth0"); m == nil {
				return fmt.Errorf("no eth0 receive counter for the pod: %v", pm.GetMetrics())
			}
			for _, cm := range pm.GetContainerMetrics() {
				if cm.GetContainerId() != c {
					continue
				}
				ws := find(cm.GetMetrics(), "container_memory_working_set_bytes", "")
				if ws == nil || ws.GetValue().GetValue() == 0 {
					return fmt.Errorf("container working set: %v", ws)
				}
				if l := ws.GetLabelValues(); l[2] != "app" || l[3] != c || l[4] != busyboxRef {
					return fmt.Errorf("container labels %q", l)
				}
				return nil
			}
			return fmt.Errorf("no metrics for container %s", c)
		}
		return fmt.Errorf("no metrics for pod %s", id)
	})

	st, err := rt.StreamContainers(callCtx(t), &runtime.StreamContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: id}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.Recv()
	if err != nil || len(msg.GetContainers()) != 1 || msg.GetContainers()[0].GetId() != c {
		t.Errorf("StreamContainers = %v, %v; want container %s", msg, err, c)
	}
}
