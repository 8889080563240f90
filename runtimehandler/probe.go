package runtimehandler

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/sys"

	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// probeTimeout bounds one `<runtime> features` call.
const probeTimeout = 10 * time.Second

// Prober finds out what a runc-compatible runtime and this kernel support.
type Prober struct {
	// IDMapPath is a directory on the filesystem that must support ID-mapped
	// mounts for user namespaces (where containers' root filesystems and
	// volumes live, e.g. peapod's root).
	IDMapPath string

	// The kernel checks, replaceable in tests.
	KernelRRO, KernelIDMap func() error

	once                sync.Once
	kernelRRO, kernelID error
}

// Features asks the runtime binary (a path, or "" for the runc on PATH)
// what it supports and checks the kernel for the rest.
func (p *Prober) Features(ctx context.Context, binary string) Features {
	if binary == "" {
		path, err := exec.LookPath("runc")
		if err != nil {
			klog.InfoS("No runc on PATH to probe; runtime features off", "err", err)
			return Features{}
		}
		binary = path
	}
	f, err := runtimeFeatures(ctx, binary)
	if err != nil {
		klog.InfoS("Runtime does not report its features; user namespaces and recursive read-only mounts off",
			"binary", binary, "err", err)
		return Features{}
	}
	p.once.Do(func() {
		if p.KernelRRO == nil {
			p.KernelRRO = kernelRRO
		}
		if p.KernelIDMap == nil {
			p.KernelIDMap = func() error { return kernelIDMap(p.IDMapPath) }
		}
		p.kernelRRO, p.kernelID = p.KernelRRO(), p.KernelIDMap()
		if p.kernelRRO != nil {
			klog.InfoS("Kernel lacks recursive read-only mounts", "err", p.kernelRRO)
		}
		if p.kernelID != nil {
			klog.InfoS("Kernel lacks ID-mapped mounts; user namespaces off", "path", p.IDMapPath, "err", p.kernelID)
		}
	})
	var out Features
	out.RecursiveReadOnlyMounts = slices.Contains(f.MountOptions, "rro") && p.kernelRRO == nil
	if l := f.Linux; l != nil && slices.Contains(l.Namespaces, "user") &&
		l.MountExtensions != nil && l.MountExtensions.IDMap != nil &&
		l.MountExtensions.IDMap.Enabled != nil && *l.MountExtensions.IDMap.Enabled {
		out.UserNamespaces = p.kernelID == nil
	}
	return out
}

// runtimeFeatures runs `<binary> features` (the OCI runtime features
// document, runc 1.1 and later).
func runtimeFeatures(ctx context.Context, binary string) (*features.Features, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "features").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			return nil, fmt.Errorf("%s features: %w: %s", binary, err, firstLine(ee.Stderr))
		}
		return nil, fmt.Errorf("%s features: %w", binary, err)
	}
	var f features.Features
	if err := json.Unmarshal(out, &f); err != nil {
		return nil, fmt.Errorf("%s features: not a features document: %w", binary, err)
	}
	return &f, nil
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}

// kernelRRO checks for mount_setattr(2), which recursive read-only mounts
// need, on a detached copy of a mount (nothing visible changes).
func kernelRRO() error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, os.TempDir(), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(fd)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("mount_setattr: %w", err)
	}
	return nil
}

// kernelIDMap checks that path's filesystem takes ID-mapped mounts: it
// ID-maps a detached copy of its mount to a throwaway user namespace.
func kernelIDMap(path string) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", path, err)
	}
	defer unix.Close(tree)
	const mapping = "0:1073741824:65536"
	return sys.UnshareAfterEnterUserns(mapping, mapping, 0, func(pid int) error {
		userns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
		if err != nil {
			return err
		}
		defer userns.Close()
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
			return fmt.Errorf("ID-mapping a mount of %s: %w", path, err)
		}
		return nil
	})
}
