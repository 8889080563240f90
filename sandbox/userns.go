package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/containerd/v2/pkg/sys"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UserNS is a pod's user namespace: how its IDs map to the host's.
type UserNS struct {
	UIDs, GIDs []specs.LinuxIDMapping
}

// UserNSOf returns the user namespace a pod config asks for, or nil when the
// pod uses the host's. Only what the kubelet sends is valid: a pod-wide
// namespace with one UID and one GID mapping, each mapping container ID 0,
// in a pod with its own network, PID and IPC namespaces.
func UserNSOf(cfg *runtime.PodSandboxConfig) (*UserNS, error) {
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	opts := nsOpts.GetUsernsOptions()
	bad := func(format string, args ...any) (*UserNS, error) {
		return nil, fmt.Errorf("user namespace: %s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	if opts == nil {
		return nil, nil // a kubelet that does not know user namespaces
	}
	switch opts.GetMode() {
	case runtime.NamespaceMode_NODE:
		if len(opts.GetUids()) > 0 || len(opts.GetGids()) > 0 {
			return bad("mode NODE takes no ID mappings")
		}
		return nil, nil
	case runtime.NamespaceMode_POD:
	default:
		return bad("mode %s is not supported, only POD or NODE", opts.GetMode())
	}
	if nsOpts.GetNetwork() == runtime.NamespaceMode_NODE || nsOpts.GetPid() == runtime.NamespaceMode_NODE ||
		nsOpts.GetIpc() == runtime.NamespaceMode_NODE {
		return bad("a pod with its own user namespace cannot share the host's network, PID or IPC namespace")
	}
	uids, err := idMapping("UID", opts.GetUids())
	if err != nil {
		return nil, err
	}
	gids, err := idMapping("GID", opts.GetGids())
	if err != nil {
		return nil, err
	}
	return &UserNS{UIDs: uids, GIDs: gids}, nil
}

func idMapping(kind string, m []*runtime.IDMapping) ([]specs.LinuxIDMapping, error) {
	switch {
	case len(m) != 1:
		return nil, fmt.Errorf("user namespace: want exactly one %s mapping, got %d: %w", kind, len(m), errdefs.ErrInvalidArgument)
	case m[0].GetContainerId() != 0:
		return nil, fmt.Errorf("user namespace: the %s mapping must start at container ID 0, not %d: %w",
			kind, m[0].GetContainerId(), errdefs.ErrInvalidArgument)
	case m[0].GetLength() == 0:
		return nil, fmt.Errorf("user namespace: the %s mapping is empty: %w", kind, errdefs.ErrInvalidArgument)
	}
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: m[0].GetHostId(), Size: m[0].GetLength()}}, nil
}

// maxID is the highest user or group ID: (uid_t)-1 means "no ID" to the
// kernel, and setgid/setgroups refuse it.
const maxID = 1<<32 - 2

// CheckIDs refuses user and group IDs that no process can take: outside
// 0..2^32-2, or, in a pod with its own user namespace, not mapped by it.
// runc would fail the start with no better reason than "setgroups: invalid
// argument" or "unmapped uid". A nil UserNS (the host's) maps every ID.
func (u *UserNS) CheckIDs(who string, uid, gid *runtime.Int64Value, groups []int64) error {
	check := func(kind string, id int64, m []specs.LinuxIDMapping) error {
		if id < 0 || id > maxID {
			return fmt.Errorf("%s: %s %d is not a valid ID (0-%d): %w", who, kind, id, int64(maxID), errdefs.ErrInvalidArgument)
		}
		if u == nil || (id >= int64(m[0].ContainerID) && id < int64(m[0].ContainerID)+int64(m[0].Size)) {
			return nil
		}
		return fmt.Errorf("%s: %s %d is not mapped by the pod's user namespace (%s 0-%d): %w",
			who, kind, id, kind, int64(m[0].ContainerID)+int64(m[0].Size)-1, errdefs.ErrInvalidArgument)
	}
	var uids, gids []specs.LinuxIDMapping
	if u != nil {
		uids, gids = u.UIDs, u.GIDs
	}
	if uid != nil {
		if err := check("UID", uid.GetValue(), uids); err != nil {
			return err
		}
	}
	if gid != nil {
		if err := check("GID", gid.GetValue(), gids); err != nil {
			return err
		}
	}
	for _, g := range groups {
		if err := check("GID", g, gids); err != nil {
			return err
		}
	}
	return nil
}

// Same reports whether a container's user namespace options ask for what its
// pod has (nil options mean "as the pod").
func (u *UserNS) Same(opts *runtime.UserNamespace) bool {
	if opts == nil {
		return true
	}
	if u == nil {
		return opts.GetMode() == runtime.NamespaceMode_NODE && len(opts.GetUids()) == 0 && len(opts.GetGids()) == 0
	}
	other, err := UserNSOf(&runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{UsernsOptions: opts}},
	}})
	return err == nil && other != nil && other.UIDs[0] == u.UIDs[0] && other.GIDs[0] == u.GIDs[0]
}

// newNetNSInUserNS creates a network namespace owned by a new user namespace
// with the pod's mappings, pins it under dir, and pins the user namespace at
// userNSPin. A network namespace the pod's user namespace owns is what lets
// the pod's root mount sysfs and set network sysctls.
func newNetNSInUserNS(dir, userNSPin string, u *UserNS) (string, error) {
	mapping := func(m specs.LinuxIDMapping) string { return fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size) }
	var path string
	err := sys.UnshareAfterEnterUserns(mapping(u.UIDs[0]), mapping(u.GIDs[0]), syscall.CLONE_NEWNET, func(pid int) error {
		ns, err := netns.NewNetNSFromPID(dir, uint32(pid))
		if err != nil {
			return err
		}
		path = ns.GetPath()
		return nil
	})
	if err != nil {
		if path != "" {
			_ = removeNetNS(path)
		}
		return "", fmt.Errorf("creating a network namespace in a user namespace: %w", err)
	}
	if err := pinUserNS(path, userNSPin); err != nil {
		_ = removeNetNS(path)
		return "", err
	}
	return path, nil
}

// pinUserNS bind-mounts the user namespace owning the network namespace at
// netnsPath onto pin, so containers can join it by path.
func pinUserNS(netnsPath, pin string) error {
	f, err := os.OpenFile(pin, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("pinning user namespace: %w", err)
	}
	f.Close()
	nsf, err := os.Open(netnsPath)
	if err != nil {
		_ = os.Remove(pin)
		return err
	}
	defer nsf.Close()
	userns, err := sys.GetUsernsForNamespace(nsf.Fd())
	if err != nil {
		_ = os.Remove(pin)
		return err
	}
	defer userns.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", userns.Fd()), pin, "none", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(pin)
		return fmt.Errorf("pinning user namespace at %s: %w", pin, err)
	}
	return nil
}

// unpinUserNS releases a pinned user namespace; a missing pin is fine.
func unpinUserNS(pin string) error {
	if pin == "" {
		return nil
	}
	if err := unix.Unmount(pin, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpinning user namespace %s: %w", pin, err)
	}
	if err := os.Remove(pin); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// SnapshotOpts give a container's root filesystem to the user namespace's
// root: containerd ID-maps the snapshot where its snapshotter can, and the
// client copies it with shifted owners where it cannot (containerd 1.6).
func (u *UserNS) SnapshotOpts() []snapshots.Opt {
	if u == nil {
		return nil
	}
	return []snapshots.Opt{client.WithUserNSRemapperLabels(u.UIDs, u.GIDs)}
}

// SpecOpt puts a container into the pod's user namespace, pinned at pin.
func (u *UserNS) SpecOpt(pin string) oci.SpecOpts {
	return func(ctx context.Context, c oci.Client, ctr *containers.Container, s *oci.Spec) error {
		if err := oci.WithUserNamespace(u.UIDs, u.GIDs)(ctx, c, ctr, s); err != nil {
			return err
		}
		return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UserNamespace, Path: pin})(ctx, c, ctr, s)
	}
}
