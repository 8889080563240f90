// Package oplease gives each multi-step operation of peapod a containerd
// lease of its own, named and labelled as peapod's. What the operation makes
// in containerd (a snapshot before its container exists, blobs before their
// image record) is then safe from containerd's garbage collector while it
// runs, and a lease a crash left behind is found and ended at the next
// start-up. Without one, the containerd client takes an anonymous lease
// that nothing ends for a day, and what it holds leaks meanwhile.
package oplease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"
)

const (
	// Label marks peapod's leases; its value names the operation.
	Label = "io.peapod.lease"
	// Expiry bounds how long an abandoned lease protects its resources if
	// no peapod comes back to end it.
	Expiry = time.Hour
)

// Begin returns ctx under a new lease for operation op on the object id
// (a random suffix when id is empty), and the function that ends it.
func Begin(ctx context.Context, ls leases.Manager, op, id string) (context.Context, func(), error) {
	if id == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
	}
	l, err := ls.Create(ctx, leases.WithID("peapod-"+op+"-"+id),
		leases.WithLabels(map[string]string{Label: op}),
		leases.WithExpiration(Expiry))
	if err != nil {
		return nil, nil, fmt.Errorf("creating a lease for %s of %s: %w", op, id, err)
	}
	end := func() {
		if err := ls.Delete(context.WithoutCancel(ctx), l); err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "Ending a lease", "lease", l.ID)
		}
	}
	return leases.WithLease(ctx, l.ID), end, nil
}

// EndAbandoned ends every lease of peapod's: at start-up, before any
// operation runs, each was left by an operation a crash cut short, and
// containerd may now collect what it protected.
func EndAbandoned(ctx context.Context, ls leases.Manager) error {
	stale, err := ls.List(ctx, fmt.Sprintf("labels.%q", Label))
	if err != nil {
		return fmt.Errorf("listing the leases of interrupted operations: %w", err)
	}
	for _, l := range stale {
		klog.InfoS("Ending the lease of an interrupted operation", "lease", l.ID, "operation", l.Labels[Label])
		if err := ls.Delete(ctx, l); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("ending lease %s: %w", l.ID, err)
		}
	}
	return nil
}
