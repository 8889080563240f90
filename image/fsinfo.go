package image

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins"
)

// fsUsageMaxAge is how long a computed usage is served before it is
// recomputed; the kubelet asks about every 10 s, and summing every
// snapshot's usage is not free.
const fsUsageMaxAge = 10 * time.Second

// FsUsage is the usage of the filesystem images are unpacked into.
type FsUsage struct {
	Timestamp  time.Time
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
}

// FsUsage reports how much of the snapshotter's filesystem images and
// container layers use.
func (s *Service) FsUsage(ctx context.Context) (FsUsage, error) {
	s.fsMu.Lock()
	defer s.fsMu.Unlock()
	if s.fsUsage != nil && time.Since(s.fsUsage.Timestamp) < fsUsageMaxAge {
		return *s.fsUsage, nil
	}
	root, err := s.snapshotterRoot(ctx)
	if err != nil {
		return FsUsage{}, err
	}
	u := FsUsage{Timestamp: time.Now(), Mountpoint: root}
	sn := s.client.SnapshotService(Snapshotter)
	err = sn.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		usage, err := sn.Usage(ctx, info.Name)
		if err != nil {
			return nil // removed while walking
		}
		u.UsedBytes += uint64(usage.Size)
		u.InodesUsed += uint64(usage.Inodes)
		return nil
	})
	if err != nil {
		return FsUsage{}, fmt.Errorf("walking %s snapshots: %w", Snapshotter, err)
	}
	s.fsUsage = &u
	return u, nil
}

// invalidateFsUsage makes the next FsUsage recompute, after a pull or removal.
func (s *Service) invalidateFsUsage() {
	s.fsMu.Lock()
	s.fsUsage = nil
	s.fsMu.Unlock()
}

// snapshotterRoot asks containerd where the snapshotter keeps its data.
func (s *Service) snapshotterRoot(ctx context.Context) (string, error) {
	resp, err := s.client.IntrospectionService().Plugins(ctx,
		fmt.Sprintf("type==%s,id==%s", plugins.SnapshotPlugin, Snapshotter))
	if err != nil {
		return "", fmt.Errorf("introspecting snapshotter %s: %w", Snapshotter, err)
	}
	for _, p := range resp.Plugins {
		if root := p.Exports["root"]; root != "" {
			return root, nil
		}
	}
	return "", fmt.Errorf("containerd does not export the root of snapshotter %s", Snapshotter)
}
