package runtimehandler

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/sys"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
			return Features{}
		}
		binary = path
	}
	out := p.features(ctx, binary)
	out.OCIVersion = ociVersion(ctx, binary)
	return out
}

func (p *Prober) features(ctx context.Context, binary string) Features {
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

// Runs checks that an OCI runtime can create a container on this host: it
// creates one (in new mount and PID namespaces, never started) and deletes
// it again.
func (p *Prober) Runs(ctx context.Context, binary string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "peapod-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	id := filepath.Base(dir)
	// A root filesystem of one empty "program": the container is created,
	// never started, so it only has to exist.
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "proc"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "probe"), nil, 0o755); err != nil {
		return err
	}
	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs},
		Process: &specs.Process{Args: []string{"/probe"}, Cwd: "/"},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{
			CgroupsPath: "/" + id,
			Namespaces:  []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}},
		},
	}
	if v := ociVersion(ctx, binary); v != "" && olderVersion(v, spec.Version) {
		spec.Version = v
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		return err
	}
	state := filepath.Join(dir, "state")
	// Output goes to a file: the container's init inherits it, and a pipe
	// would keep the command's output open until the init is gone.
	run := func(args ...string) error {
		out, err := os.CreateTemp(dir, "out")
		if err != nil {
			return err
		}
		defer out.Close()
		cmd := exec.CommandContext(ctx, binary, append([]string{"--root", state}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			msg, _ := os.ReadFile(out.Name())
			return fmt.Errorf("%s %s: %w: %s", binary, args[0], err, strings.TrimSpace(string(msg)))
		}
		return nil
	}
	createErr := run("create", "--bundle", dir, id)
	deleteErr := run("delete", "--force", id)
	if createErr != nil {
		return createErr
	}
	return deleteErr
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

// ociVersion is the newest OCI runtime spec version the runtime takes: its
// features document's ociVersionMax, else the "spec:" line of its --version
// (runc and crun both print one); "" when it says neither.
func ociVersion(ctx context.Context, binary string) string {
	if f, err := runtimeFeatures(ctx, binary); err == nil && f.OCIVersionMax != "" {
		return f.OCIVersionMax
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "spec:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
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
