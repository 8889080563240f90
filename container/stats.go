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

// A writable layer's usage is measured in the background, never inside a
// stats call: measuring walks the layer's files, which with hundreds of
// containers would make the kubelet's every-few-seconds stats calls as slow
// as the disk. A stats call answers the last measure, and asks for a new
// one when that is older than layerUsageMaxAge; at most
// layerUsageWalkers walks run at once.
const (
	layerUsageMaxAge  = 10 * time.Second
	layerUsageWalkers = 2
	layerUsageTimeout = time.Minute
)

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
	mu        sync.Mutex
	cpu       map[string]cpuSample
	layers    map[string]layerSample
	measuring map[string]bool // layers being measured
	walkers   chan struct{}   // a slot per layer walk under way
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
	st.LayerBytes, st.LayerInodes = m.layerUsage(c.ID, now)
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

// layerUsage returns container id's writable layer usage as last
// measured (zero before its first measure), and has it measured again in
// the background when that measure is missing or older than
// layerUsageMaxAge.
func (m *Manager) layerUsage(id string, now time.Time) (uint64, uint64) {
	m.stats.mu.Lock()
	defer m.stats.mu.Unlock()
	l, ok := m.stats.layers[id]
	if (!ok || now.Sub(l.at) >= layerUsageMaxAge) && !m.stats.measuring[id] {
		if m.stats.measuring == nil {
			m.stats.measuring = map[string]bool{}
			m.stats.walkers = make(chan struct{}, layerUsageWalkers)
		}
		m.stats.measuring[id] = true
		go m.measureLayer(id, m.stats.walkers)
	}
	return l.bytes, l.inodes
}

// measureLayer measures container id's writable layer, waiting for a
// walker slot, and keeps the result unless the container went meanwhile.
func (m *Manager) measureLayer(id string, walkers chan struct{}) {
	walkers <- struct{}{}
	defer func() { <-walkers }()
	ctx, cancel := context.WithTimeout(context.Background(), layerUsageTimeout) // the client's default namespace
	defer cancel()
	u, err := m.client.SnapshotService(image.Snapshotter).Usage(ctx, id)
	m.stats.mu.Lock()
	defer m.stats.mu.Unlock()
	delete(m.stats.measuring, id)
	if _, gone := m.index.Get(id); err != nil || gone != nil {
		return // measured again at the next stats call, if the container is still there
	}
	if m.stats.layers == nil {
		m.stats.layers = map[string]layerSample{}
	}
	m.stats.layers[id] = layerSample{uint64(u.Size), uint64(u.Inodes), time.Now()}
}

// forget drops a removed container's samples.
func (sc *statsCache) forget(id string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	delete(sc.cpu, id)
	delete(sc.layers, id)
}
