package container

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"
)

// Leases keep what an operation makes in containerd (a snapshot before its
// container exists, a diff before it is copied out) from containerd's
// garbage collector while the operation runs. Each carries leaseLabel, whose
// value names the operation; a lease still there when peapod starts was
// abandoned by a crash, and is ended.
const (
	leaseLabel = "io.peapod.lease"
	// leaseExpiry bounds how long an abandoned lease protects its resources
	// if no peapod comes back to end it.
	leaseExpiry = time.Hour

	// The operations that take leases.
	leaseCreate     = "container-create"
	leaseCheckpoint = "container-checkpoint"
)

// withLease returns ctx under a new lease for operation op on container id,
// and the function that ends the lease.
func (m *Manager) withLease(ctx context.Context, op, id string) (context.Context, func(), error) {
	ls := m.client.LeasesService()
	l, err := ls.Create(ctx, leases.WithID("peapod-"+op+"-"+id),
		leases.WithLabels(map[string]string{leaseLabel: op}),
		leases.WithExpiration(leaseExpiry))
	if err != nil {
		return nil, nil, fmt.Errorf("creating a lease for %s of container %s: %w", op, id, err)
	}
	done := func() {
		if err := ls.Delete(context.WithoutCancel(ctx), l); err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "Ending a lease", "id", id, "lease", l.ID)
		}
	}
	return leases.WithLease(ctx, l.ID), done, nil
}

// endAbandonedLeases, at start-up, ends the leases of operations a crash
// cut short, so containerd collects what they protected.
func (m *Manager) endAbandonedLeases(ctx context.Context) {
	ls := m.client.LeasesService()
	stale, err := ls.List(ctx, fmt.Sprintf("labels.%q", leaseLabel))
	if err != nil {
		klog.ErrorS(err, "Listing the leases of interrupted operations")
		return
	}
	for _, l := range stale {
		klog.InfoS("Ending the lease of an interrupted operation", "lease", l.ID, "operation", l.Labels[leaseLabel])
		if err := ls.Delete(ctx, l); err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "Ending a stale lease", "lease", l.ID)
		}
	}
}
