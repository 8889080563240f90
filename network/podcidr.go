package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/klog/v2"
)

// podCIDRsFile keeps the node's pod CIDRs across restarts of peapod: the
// kubelet sends them once, not every time peapod starts.
const podCIDRsFile = "pod-cidrs.json"

// ParsePodCIDRs parses the kubelet's pod CIDR: one CIDR, or two (IPv4 and
// IPv6) separated by a comma. An empty string is no CIDR.
func ParsePodCIDRs(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		_, n, err := net.ParseCIDR(part)
		if err != nil {
			return nil, fmt.Errorf("pod CIDR %q: %w", part, err)
		}
		out = append(out, n.String())
	}
	return out, nil
}

// SetPodCIDRs sets the node's pod CIDRs, which every later CNI ADD passes
// to plugins with the ipRanges capability (host-local then allocates from
// them), and keeps them for the next start of peapod.
func (m *Manager) SetPodCIDRs(cidrs []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.Equal(cidrs, m.podCIDRs) {
		return nil
	}
	b, err := json.Marshal(cidrs)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.cacheDir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(m.cacheDir, podCIDRsFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(m.cacheDir, podCIDRsFile)); err != nil {
		return err
	}
	klog.InfoS("Pod CIDRs set", "cidrs", cidrs, "was", m.podCIDRs)
	m.podCIDRs = cidrs
	return nil
}

// PodCIDRs returns the node's pod CIDRs.
func (m *Manager) PodCIDRs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loadPodCIDRs()
	return slices.Clone(m.podCIDRs)
}

// loadPodCIDRs reads the kept pod CIDRs once; m.mu is held.
func (m *Manager) loadPodCIDRs() {
	if m.podCIDRsLoaded {
		return
	}
	m.podCIDRsLoaded = true
	b, err := os.ReadFile(filepath.Join(m.cacheDir, podCIDRsFile))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil {
		err = json.Unmarshal(b, &m.podCIDRs)
	}
	if err != nil {
		klog.ErrorS(err, "Ignoring the kept pod CIDRs", "file", filepath.Join(m.cacheDir, podCIDRsFile))
	}
}

// ipRanges is the ipRanges capability argument: one range set per CIDR.
func ipRanges(cidrs []string) [][]map[string]string {
	out := make([][]map[string]string, 0, len(cidrs))
	for _, c := range cidrs {
		out = append(out, []map[string]string{{"subnet": c}})
	}
	return out
}
