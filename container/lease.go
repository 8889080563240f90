package container

import (
	"context"

	"github.com/peapod-cri/peapod/oplease"
)

// The operations on containers that take a lease of their own (see
// package oplease): a creation's snapshot and image volume views must
// outlive a crash only until the next start-up ends the lease, and a
// checkpoint's diff likewise.
const (
	leaseCreate     = "container-create"
	leaseCheckpoint = "container-checkpoint"
)

// withLease returns ctx under a new lease for operation op on container id,
// and the function that ends the lease.
func (m *Manager) withLease(ctx context.Context, op, id string) (context.Context, func(), error) {
	return oplease.Begin(ctx, m.client.LeasesService(), op, id)
}
