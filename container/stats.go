package container

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/peapod-cri/peapod/cgroupstats"
	"github.com/peapod-cri/peapod/image"
)

// layerUsageMaxAge is how long a writable layer's measured size is reused:
// measuring walks the layer's files, too slow to repeat on every stats call.
const layerUsageMaxAge = 10 * time.Second

// Stats is a container's resource usage at one moment.
type Stats struct {
	Timestamp time.Time
	cgroupstats.Stats
	// CPUNanoCores is the CPU rate since the previous sample, when there was one.
	CPUNanoCores *uint64
	// LayerBytes and LayerInodes are the writable layer's usage.
	LayerBytes, LayerInodes uint64
	// LayerMountpoint is where the snapshotter keeps layers.
	LayerMountpoint string
}

type statsCache struct {
	mu     sync.Mutex
	cpu    map[string]cpuSample
	layers map[string]layerSample
}

type cpuSample struct {
	usage uint64
	at    time.Time
}

type layerSample struct {
	bytes, inodes uint64
	at            time.Time
}

// Stats reads a container's usage from its cgroup and writable layer. A
// container that is not running has no cgroup and reports zero usage.
func (m *Manager) Stats(ctx context.Context, c Container) (Stats, error) {
	now := time.Now()
	st := Stats{Timestamp: now}
	if c.State == StateRunning && c.CgroupsPath != "" {
		cg, err := cgroupstats.Read(c.CgroupsPath)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return st, err
		}
		st.Stats = cg
		if err == nil {
			st.CPUNanoCores = m.stats.cpuRate(c.ID, cg.CPUUsageNanos, now)
		}
	}
	st.LayerBytes, st.LayerInodes = m.layerUsage(ctx, c.ID, now)
	if fs, err := m.images.FsUsage(ctx); err == nil {
		st.LayerMountpoint = fs.Mountpoint
	}
	return st, nil
}

// cpuRate turns two cumulative samples into nanocores.
func (sc *statsCache) cpuRate(id string, usage uint64, now time.Time) *uint64 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.cpu == nil {
		sc.cpu = map[string]cpuSample{}
	}
	prev, ok := sc.cpu[id]
	sc.cpu[id] = cpuSample{usage, now}
	if !ok || !now.After(prev.at) || usage < prev.usage {
		return nil
	}
	rate := uint64(float64(usage-prev.usage) / now.Sub(prev.at).Seconds())
	return &rate
}

func (m *Manager) layerUsage(ctx context.Context, id string, now time.Time) (uint64, uint64) {
	m.stats.mu.Lock()
	if l, ok := m.stats.layers[id]; ok && now.Sub(l.at) < layerUsageMaxAge {
		m.stats.mu.Unlock()
		return l.bytes, l.inodes
	}
	m.stats.mu.Unlock()
	u, err := m.client.SnapshotService(image.Snapshotter).Usage(ctx, id)
	if err != nil {
		return 0, 0
	}
	m.stats.mu.Lock()
	defer m.stats.mu.Unlock()
	if m.stats.layers == nil {
		m.stats.layers = map[string]layerSample{}
	}
	m.stats.layers[id] = layerSample{uint64(u.Size), uint64(u.Inodes), now}
	return uint64(u.Size), uint64(u.Inodes)
}

// forget drops a removed container's samples.
func (sc *statsCache) forget(id string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	delete(sc.cpu, id)
	delete(sc.layers, id)
}
