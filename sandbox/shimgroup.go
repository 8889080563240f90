package sandbox

import (
	"context"
	"fmt"
	"time"

	sandboxstore "github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"
)

// A pod registered in containerd's sandbox store (containerd 2.x) has the
// tasks of its containers created straight in its pause container's shim,
// as containerd's CRI has them: without it, containerd runs the shim binary
// once per container only for that process to find the pod's shim (about
// 45 ms of each StartContainer, measured here). The record is metadata
// only, named by the sandbox's ID; containerd 1.6 has no sandbox store, and
// its pods go without.

// registerShimGroup records sb in containerd's sandbox store and marks it
// so that its containers name it; where the store does not exist, or
// refuses, the pod works as before.
func (m *Manager) registerShimGroup(ctx context.Context, sb *Sandbox, runtimeType string) {
	if m.noSandboxStore.Load() {
		return
	}
	now := time.Now()
	_, err := m.client.SandboxStore().Create(ctx, sandboxstore.Sandbox{
		ID:        sb.ID,
		Labels:    map[string]string{kindLabel: kindSandbox},
		Runtime:   sandboxstore.RuntimeOpts{Name: runtimeType},
		CreatedAt: now,
		UpdatedAt: now,
	})
	switch {
	case err == nil:
		sb.ShimGroup = true
	case errdefs.IsNotImplemented(err):
		m.noSandboxStore.Store(true)
		klog.V(2).InfoS("containerd has no sandbox store; each container's task starts its shim binary")
	default:
		klog.ErrorS(err, "Registering a sandbox in containerd's sandbox store; its containers start without it", "id", sb.ID)
	}
}

// unregisterShimGroup removes sandbox id from containerd's sandbox store.
func (m *Manager) unregisterShimGroup(ctx context.Context, id string) error {
	if m.noSandboxStore.Load() {
		return nil
	}
	err := m.client.SandboxStore().Delete(ctx, id)
	switch {
	case err == nil, errdefs.IsNotFound(err):
		return nil
	case errdefs.IsNotImplemented(err):
		m.noSandboxStore.Store(true)
		return nil
	}
	return fmt.Errorf("removing sandbox %s from containerd's sandbox store: %w", id, err)
}

// sweepShimGroups, at start-up, removes the sandbox store records of
// peapod's sandboxes that no longer exist (a crash between removing the
// pause container and its record).
func (m *Manager) sweepShimGroups(ctx context.Context, known map[string]bool) {
	records, err := m.client.SandboxStore().List(ctx, fmt.Sprintf("labels.%q==%s", kindLabel, kindSandbox))
	if errdefs.IsNotImplemented(err) {
		m.noSandboxStore.Store(true)
		return
	}
	if err != nil {
		klog.ErrorS(err, "Listing containerd's sandbox store")
		return
	}
	for _, r := range records {
		if known[r.ID] {
			continue
		}
		klog.InfoS("Removing the sandbox store record of a sandbox that does not exist", "id", r.ID)
		if err := m.unregisterShimGroup(ctx, r.ID); err != nil {
			klog.ErrorS(err, "Removing a stale sandbox store record", "id", r.ID)
		}
	}
}
