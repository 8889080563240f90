package server

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"k8s.io/klog/v2"
)

const (
	// healthInterval is how often containerd's reachability is probed;
	// RuntimeReady lags a change by at most this much.
	healthInterval = time.Second
	// healthTimeout bounds one probe. containerd's dialer waits for a missing
	// socket to appear, so a probe can take this long while containerd is down.
	healthTimeout = 2 * time.Second
	// firstProbeTimeout bounds the probe a Status call makes itself before
	// any probe has finished (just after start): a reachable containerd
	// answers in milliseconds, and Status must answer promptly while it is down.
	firstProbeTimeout = 500 * time.Millisecond
)

// containerdHealth probes containerd in the background, so that Status (which
// the kubelet calls every few seconds) answers from memory instead of waiting
// on a daemon that may be down or hung.
type containerdHealth struct {
	containerd Containerd

	mu      sync.RWMutex
	checked bool
	version client.Version
	err     error
}

// run probes until ctx is done.
func (h *containerdHealth) run(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		h.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *containerdHealth) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	v, err := h.containerd.Version(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checked && (err == nil) != (h.err == nil) {
		if err != nil {
			klog.ErrorS(err, "containerd became unreachable")
		} else {
			klog.InfoS("containerd is reachable again", "version", v.Version)
		}
	}
	h.checked, h.version, h.err = true, v, err
}

// status returns the last probe's result, probing first if none has run.
func (h *containerdHealth) status(ctx context.Context) (client.Version, error) {
	h.mu.RLock()
	checked, v, err := h.checked, h.version, h.err
	h.mu.RUnlock()
	if !checked {
		probeCtx, cancel := context.WithTimeout(ctx, firstProbeTimeout)
		defer cancel()
		h.probe(probeCtx)
		return h.status(ctx)
	}
	return v, err
}
