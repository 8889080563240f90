//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/failpoint"
)

// groupImage has two layers (busybox, then an /etc/group naming
// group-defined-in-image, /etc/passwd and /home/default-user): its view is
// an overlay. busyboxRef has one layer: its view is a bind mount.
const groupImage = "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"

// imageVolumeViews lists the image volume views in the env's namespace, as
// "<container ID>: <key>".
func (e *podEnv) imageVolumeViews() []string {
	e.t.Helper()
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	var out []string
	err := e.ctrd().SnapshotService(snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if owner, ok := info.Labels["io.peapod.image-volume.container"]; ok {
			out = append(out, owner+": "+info.Name)
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("listing snapshots in %s: %v", e.ns, err)
	}
	return out
}

// createLeases lists the leases peapod's CreateContainer holds in the env's
// namespace.
func (e *podEnv) createLeases() []string {
	e.t.Helper()
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	ls, err := e.ctrd().LeasesService().List(ctx, `labels."io.peapod.lease"==container-create`)
	if err != nil {
		e.t.Fatalf("listing leases in %s: %v", e.ns, err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

// imageVolumeMounts lists the image volumes mounted under the env's state.
func (e *podEnv) imageVolumeMounts() []string {
	var out []string
	for _, m := range e.mountsUnderState() {
		if strings.Contains(m, "/image-volumes/") {
			out = append(out, m)
		}
	}
	return out
}

// imageVolumeDirs lists the image-volumes directories in the env's state.
func (e *podEnv) imageVolumeDirs() []string {
	dirs, _ := filepath.Glob(filepath.Join(e.state(), "containers", "*", "image-volumes"))
	return dirs
}

// imageVolumeLeftovers reports any image volume state of the env.
func (e *podEnv) imageVolumeLeftovers() error {
	e.t.Helper()
	var errs []error
	add := func(what string, items []string) {
		if len(items) > 0 {
			errs = append(errs, fmt.Errorf("%s: %q", what, items))
		}
	}
	add("image volume views", e.imageVolumeViews())
	add("image volume mounts", e.imageVolumeMounts())
	add("image volume directories", e.imageVolumeDirs())
	add("create leases", e.createLeases())
	return errors.Join(errs...)
}

// detachImageVolumes unmounts the image volumes a failed test left mounted
// under the env's state, so that removing the temporary directory never
// reaches into an image's layers.
func (e *podEnv) detachImageVolumes() {
	for _, m := range slices.Backward(e.imageVolumeMounts()) {
		e.t.Logf("detaching %s, left mounted", m)
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
}

func imageMount(path, ref, sub string, opts ...string) *runtime.Mount {
	return &runtime.Mount{ContainerPath: path, Image: &runtime.ImageSpec{Image: ref}, ImageSubPath: sub, Readonly: true, MountOptions: opts}
}

// sh runs script in container id and returns its output and exit code.
func sh(t *testing.T, rt runtime.RuntimeServiceClient, id, script string) (string, int32) {
	t.Helper()
	return execSync(t, rt, id, "sh", "-c", script)
}

// gc runs containerd's garbage collector to its end: a lease deleted
// synchronously does.
func gc(t *testing.T, e *podEnv) {
	t.Helper()
	collectGarbage(t, e.ctrd(), e.ns)
}

// Image volumes: an image's files, read-only, at a container path, whole
// or a sub path; a bad sub path or an image not pulled fails the creation
// and leaves nothing; the volumes outlive containerd's garbage collection
// and a peapod crash, come back after a reboot's unmount, and go with
// their container.
func TestImageVolume(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	t.Cleanup(e.detachImageVolumes)
	rt, ic := e.serve()
	busyboxID := pull(t, ic, busyboxRef)
	pull(t, ic, groupImage)
	cfg := e.podConfig("imgvol")
	sbID := runPod(t, rt, cfg)

	// Creations that must fail, and leave nothing.
	hostDir := tempDir(t)
	for _, tc := range []struct {
		name  string
		mount *runtime.Mount
		code  codes.Code
	}{
		{"missing sub path", imageMount("/img", groupImage, "no/such/dir"), codes.InvalidArgument},
		{"escaping sub path", imageMount("/img", groupImage, "../.."), codes.InvalidArgument},
		{"absolute sub path", imageMount("/img", groupImage, "/etc"), codes.InvalidArgument},
		{"file sub path", imageMount("/img", groupImage, "etc/group"), codes.InvalidArgument},
		{"image not pulled", imageMount("/img", "registry.k8s.io/e2e-test-images/nginx:1.14-2", ""), codes.NotFound},
		{"image and host path", &runtime.Mount{ContainerPath: "/img", HostPath: hostDir, Image: &runtime.ImageSpec{Image: groupImage}}, codes.InvalidArgument},
		{"mount option rw", imageMount("/img", groupImage, "", "rw"), codes.InvalidArgument},
		{"host mount option suid", &runtime.Mount{ContainerPath: "/h", HostPath: hostDir, MountOptions: []string{"suid"}}, codes.InvalidArgument},
	} {
		// A good image volume first: the failing one must undo it too.
		c := busybox("bad", "sleep 1", imageMount("/ok", busyboxRef, ""), tc.mount)
		_, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: sbID, Config: c, SandboxConfig: cfg})
		wantCode(t, "CreateContainer with "+tc.name, err, tc.code)
		t.Logf("%s: %v", tc.name, err)
	}
	if err := e.imageVolumeLeftovers(); err != nil {
		t.Errorf("after the failed creations: %v", err)
	}
	if ctrs := e.containerdContainers(); len(ctrs) != 1 {
		t.Errorf("containerd containers after the failed creations: %q, want just the sandbox", ctrs)
	}

	// reader: the two-layer image whole at /img (noexec), its /etc at /sub,
	// the one-layer image at /bb, a host path with noexec at /host.
	readerID := startContainer(t, rt, sbID, cfg, busybox("reader", "trap 'exit 0' TERM; while true; do sleep 0.1; done",
		imageMount("/img", groupImage, "", "noexec"),
		imageMount("/sub", groupImage, "etc"),
		imageMount("/bb", busyboxID, "./bin/"), // by ID, as the kubelet names it
		&runtime.Mount{ContainerPath: "/host", HostPath: hostDir, MountOptions: []string{"noexec", "nosuid"}},
	))
	// late: created, started only after the restart.
	lateResp, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: sbID, SandboxConfig: cfg,
		Config: busybox("late", "trap 'exit 0' TERM; while true; do sleep 0.1; done", imageMount("/img", groupImage, "home"))})
	if err != nil {
		t.Fatalf("CreateContainer(late): %v", err)
	}
	lateID := lateResp.ContainerId
	ids := []string{readerID, lateID}

	checkReader := func(when string) {
		t.Helper()
		for _, tc := range []struct {
			script, want string
			code         int32
		}{
			// Both layers of the overlay.
			{script: "grep -c group-defined-in-image /img/etc/group", want: "1\n"},
			{script: "test -f /img/bin/busybox && ls /img/home", want: "default-user\n"},
			// The sub path is the image's /etc.
			{script: "grep -c group-defined-in-image /sub/group && test -f /sub/passwd && test ! -e /sub/etc", want: "1\n"},
			{script: "test -x /bb/busybox && test ! -e /bb/bin", want: ""},
			// Read-only, each.
			{script: "touch /img/x", code: 1},
			{script: "mkdir /img/home/d", code: 1},
			{script: "touch /sub/x", code: 1},
			{script: "touch /bb/x", code: 1},
			// noexec where asked, and only there.
			{script: "/img/bin/busybox true", code: 126},
			{script: "/bb/busybox true", code: 0},
			{script: "cp /bin/busybox /host/true && /host/true", code: 126},
			{script: "cp /bin/busybox /tmp/true && /tmp/true", code: 0},
		} {
			out, code := sh(t, rt, readerID, tc.script)
			if code != tc.code || (code == 0 && out != tc.want) {
				t.Errorf("%s: `%s` = %q, exit %d; want %q, exit %d", when, tc.script, out, code, tc.want, tc.code)
			}
		}
		mi, _ := sh(t, rt, readerID, "cat /proc/self/mountinfo")
		for _, line := range strings.Split(mi, "\n") {
			f := strings.Fields(line)
			if len(f) > 5 && f[4] == "/img" {
				if opts := strings.Split(f[5], ","); !slices.Contains(opts, "ro") || !slices.Contains(opts, "noexec") {
					t.Errorf("%s: /img mounted with %q, want ro and noexec", when, f[5])
				}
			}
		}
	}
	checkReader("at start")
	st := containerStatus(t, rt, readerID).Status
	if len(st.Mounts) != 4 || st.Mounts[0].GetImage().GetImage() != groupImage || st.Mounts[1].ImageSubPath != "etc" {
		t.Errorf("ContainerStatus(reader) mounts = %v", st.Mounts)
	}
	if views := e.imageVolumeViews(); len(views) != 4 {
		t.Errorf("image volume views: %q, want reader's 3 and late's 1", views)
	}

	// containerd's garbage collector keeps the views: their containers
	// reference them.
	gc(t, e)
	if views := e.imageVolumeViews(); len(views) != 4 {
		t.Errorf("image volume views after a GC: %q, want 4", views)
	}
	if leases := e.createLeases(); len(leases) != 0 {
		t.Errorf("create leases left: %q", leases)
	}
	checkReader("after a GC")

	// A crash, and late's mount gone as a reboot would take it.
	e.d.signal(syscall.SIGKILL)
	e.d.wait(5 * time.Second)
	state, err := filepath.EvalSymlinks(e.state())
	if err != nil {
		t.Fatal(err)
	}
	lateMount := filepath.Join(state, "containers", lateID, "image-volumes", "0")
	if err := unix.Unmount(lateMount, 0); err != nil {
		t.Fatalf("unmounting late's image volume: %v", err)
	}
	rt, _ = e.serve()
	e.recovered(rt)
	if !slices.Contains(e.imageVolumeMounts(), lateMount) {
		t.Errorf("late's image volume is not mounted again after the recovery: mounts %q", e.imageVolumeMounts())
	}
	checkReader("after the restart")
	if _, err := rt.StartContainer(podCtx(t), &runtime.StartContainerRequest{ContainerId: lateID}); err != nil {
		t.Fatalf("StartContainer(late) after the restart: %v", err)
	}
	if out, code := sh(t, rt, lateID, "ls /img; touch /img/x"); out != "default-user\n" || code == 0 {
		t.Errorf("late's /img (the image's /home): %q, writable: %v", out, code == 0)
	}

	// RemoveContainer takes the container's volumes, and only its.
	if _, err := rt.RemoveContainer(podCtx(t), &runtime.RemoveContainerRequest{ContainerId: lateID}); err != nil {
		t.Fatalf("RemoveContainer(late): %v", err)
	}
	for _, v := range e.imageVolumeViews() {
		if strings.HasPrefix(v, lateID) {
			t.Errorf("late's view %s left after RemoveContainer", v)
		}
	}
	if slices.Contains(e.imageVolumeMounts(), lateMount) {
		t.Errorf("late's mount left after RemoveContainer")
	}
	if _, err := os.Stat(filepath.Join(state, "containers", lateID)); !os.IsNotExist(err) {
		t.Errorf("late's state directory after RemoveContainer: %v", err)
	}
	checkReader("after late's removal")

	if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	eventually(t, 10*time.Second, "nothing of the pod is left", func() error {
		return errors.Join(e.leftovers(sbID, ids...), e.imageVolumeLeftovers())
	})
}

// A CreateContainer cut short by a crash once its image volumes are
// mounted leaves nothing of them once peapod is back.
func TestImageVolumeCrashedCreate(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	t.Cleanup(e.detachImageVolumes)
	d := e.start(failpoint.EnvVar + "=container-create:after-image-volumes")
	rt := d.waitServing()
	ic := runtime.NewImageServiceClient(d.dial())
	pull(t, ic, busyboxRef)
	pull(t, ic, groupImage)
	cfg := e.podConfig("crash")
	sbID := runPod(t, rt, cfg)

	c := busybox("crash", "sleep 3600", imageMount("/img", groupImage, "etc"), imageMount("/bb", busyboxRef, ""))
	_, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: sbID, Config: c, SandboxConfig: cfg})
	wantCode(t, "CreateContainer as peapod dies", err, codes.Unavailable)
	d.wait(10 * time.Second)
	if !strings.Contains(d.stderr.String(), "Failpoint hit") {
		t.Fatalf("peapod exited without hitting its failpoint:\n%s", d.stderr.String())
	}
	// What the crash left proves where it was cut.
	if v, m, l := e.imageVolumeViews(), e.imageVolumeMounts(), e.createLeases(); len(v) != 2 || len(m) != 2 || len(l) != 1 {
		t.Fatalf("after the crash: views %q, mounts %q, leases %q; want 2, 2, 1", v, m, l)
	}

	rt, _ = e.serve()
	e.recovered(rt)
	if err := e.imageVolumeLeftovers(); err != nil {
		t.Errorf("the recovery left the orphaned image volumes: %v", err)
	}

	// The kubelet's retry succeeds.
	id := startContainer(t, rt, sbID, cfg, c)
	if out, _ := sh(t, rt, id, "grep -c group-defined-in-image /img/group"); out != "1\n" {
		t.Errorf("the retried container's /img/group: %q", out)
	}
	if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	eventually(t, 10*time.Second, "nothing of the pod is left", func() error {
		return errors.Join(e.leftovers(sbID, id), e.imageVolumeLeftovers())
	})
}
