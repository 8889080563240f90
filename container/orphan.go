package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/config"
	"github.com/peapod-cri/peapod/shimreaper"
)

// A task create that containerd gave up on can still complete in the
// shim. containerd 2.x returns from a create as soon as its caller's
// context ends (peapod died, or a client cancelled; see core/runtime/v2's
// TaskManager.Create) and cleans up, while the shim goes on: after runc
// create it opens the output fifos, and waits for their reader (the IO
// server, which may be restarting) to do so. The OCI runtime then holds a
// created container that containerd does not list, and every later create
// of the ID fails with "container with given ID already exists". Such a
// container is deleted through the OCI runtime itself.

// defaultRuncRoot is the runc shim's state root when the handler names none.
const defaultRuncRoot = "/run/containerd/runc"

// runtimeOrphan reports whether err is the OCI runtime refusing a create
// because it holds a container of that ID.
func runtimeOrphan(err error) bool {
	return err != nil && strings.Contains(err.Error(), "container with given ID already exists")
}

// deleteRuntimeOrphan deletes container c's container in its OCI runtime,
// which containerd does not list (its task is gone); none is fine.
func (m *Manager) deleteRuntimeOrphan(ctx context.Context, c *Container) error {
	binary, root, err := m.ociRuntime(ctx, c)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, c.ID)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	out, err := exec.CommandContext(ctx, binary, "--root", root, "delete", "--force", c.ID).CombinedOutput()
	if err != nil {
		return fmt.Errorf("deleting the %s container %s that containerd does not list: %v: %s", binary, c.ID, err, strings.TrimSpace(string(out)))
	}
	klog.InfoS("Deleted a container of the OCI runtime that containerd does not list", "id", c.ID, "runtime", binary)
	return nil
}

// ociRuntime is the OCI runtime binary that runs container c, and its
// state root for peapod's namespace, as the runc shim runs it.
func (m *Manager) ociRuntime(ctx context.Context, c *Container) (binary, root string, _ error) {
	handler := "" // the default, for a container whose pod is gone
	if sb, err := m.sandboxes.Get(ctx, c.SandboxID); err == nil {
		handler = sb.RuntimeHandler
	}
	rh, err := m.config.Handlers.Get(handler)
	if err != nil {
		return "", "", err
	}
	if rh.Type != config.RuncShim {
		return "", "", fmt.Errorf("runtime %s: %w", rh.Type, errdefs.ErrNotImplemented)
	}
	binary, root = rh.Binary, rh.Root
	if binary == "" {
		binary = "runc"
	}
	if root == "" {
		root = defaultRuncRoot
	}
	return binary, filepath.Join(root, m.config.Namespace), nil // the shim's state root is per namespace
}

// An orphan bundle: containerd makes a task's bundle directory (in its
// state, named by the namespace and the task's ID) before it starts the
// task's shim, and removes it once that shim is gone. A containerd stopped
// in between leaves the directory, and containerd 1.6 does not always
// remove it when it starts again (its clean-up after a shim that never ran
// fails), while it knows no task of the ID: every later create of the ID
// then fails on it, "mkdir <bundle>: file exists", for good (TestChaos met
// it on 1.6: a StartContainer never finished). With no task of the ID in
// containerd, no shim of it running, and nothing of the bundle changed for
// orphanBundleAfter, the bundle is no one's: it is removed, its rootfs
// unmounted first, and the create made again. The last condition is for
// containerd's own clean-ups, of which it tells nothing: a create that
// failed (its caller gone) removes its bundle last, after its shim has
// gone, and a bundle removed before that would take the next create's
// (whose rootfs mount then fails). Its age, not a wait of peapod's, is
// what counts: peapod may restart many times meanwhile.
const orphanBundleAfter = 5 * time.Second

// bundleInTheWay matches the error of a task create that met a bundle
// directory of the task's ID.
var bundleInTheWay = regexp.MustCompile(`mkdir (/\S*/io\.containerd\.runtime\.v2\.task/([^/\s]+)/([^/\s:]+)): file exists`)

// orphanBundlePath is the bundle of container id in namespace ns that err,
// a task create's, says is in the way; "" when err says no such thing.
func orphanBundlePath(ns, id string, err error) string {
	if err == nil {
		return ""
	}
	m := bundleInTheWay.FindStringSubmatch(err.Error())
	if m == nil || m[2] != ns || m[3] != id || filepath.Clean(m[1]) != m[1] {
		return ""
	}
	return m[1]
}

// removeOrphanBundle removes bundle, the bundle directory of container id's
// task that a create met, if it is no one's: nothing of it changed for
// orphanBundleAfter, containerd has no task of the ID, and no shim of the
// ID runs (one running, or containerd's clean-up after one, is left to
// finish). It reports whether it removed it. The caller holds the
// container's lock, so no create of the ID is under way but one a dead
// peapod asked for.
func (m *Manager) removeOrphanBundle(ctx context.Context, id, bundle string) (bool, error) {
	if time.Since(lastChange(bundle)) < orphanBundleAfter {
		return false, nil
	}
	if shimreaper.Settling("/proc", m.config.Namespace, m.config.ContainerdAddress, id) {
		return false, nil
	}
	_, err := m.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err = errgrpc.ToNative(err); !errdefs.IsNotFound(err) {
		return false, err // containerd has a task of the ID after all (or cannot tell)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	if err := mount.UnmountAll(rootfs, unix.MNT_DETACH); err != nil {
		return false, fmt.Errorf("unmounting the rootfs of the orphan bundle %s: %w", bundle, err)
	}
	// Nothing under it may be a mount point: removing would reach into it.
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(bundle))
	if err != nil {
		return false, err
	}
	if len(mounts) > 0 {
		return false, fmt.Errorf("the orphan bundle %s still has a mount: %s", bundle, mounts[0].Mountpoint)
	}
	klog.InfoS("Removing a bundle of the container's task that containerd left and no longer knows", "id", id, "bundle", bundle)
	if err := os.RemoveAll(bundle); err != nil {
		return false, fmt.Errorf("removing the orphan bundle %s: %w", bundle, err)
	}
	return true, nil
}

// lastChange is when dir, or an entry of it, last changed (its status, as
// a file made, written or removed in it changes it); now when dir cannot
// be read.
func lastChange(dir string) time.Time {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return time.Now()
	}
	last := time.Unix(st.Ctim.Unix())
	entries, err := os.ReadDir(dir)
	if err != nil {
		return time.Now()
	}
	for _, e := range entries {
		if err := unix.Lstat(filepath.Join(dir, e.Name()), &st); err == nil {
			if t := time.Unix(st.Ctim.Unix()); t.After(last) {
				last = t
			}
		}
	}
	return last
}
