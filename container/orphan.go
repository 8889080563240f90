package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/config"
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
