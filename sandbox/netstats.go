package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// InterfaceStats are one network interface's counters.
type InterfaceStats struct {
	Name              string
	RxBytes, RxErrors uint64
	TxBytes, TxErrors uint64
}

// NetworkStats reads the interface counters of a ready sandbox's network
// namespace, through its pause process's view of /proc/net/dev (no need to
// enter the namespace). Loopback is left out.
func (m *Manager) NetworkStats(sb *Sandbox) ([]InterfaceStats, error) {
	if sb.Pid == 0 || sb.HostNetwork() {
		return nil, nil
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", sb.Pid))
	if err != nil {
		return nil, err
	}
	return parseNetDev(raw)
}

// parseNetDev parses /proc/net/dev: two header lines, then per interface
// "name: rx bytes packets errs drop fifo frame compressed multicast tx bytes packets errs …".
func parseNetDev(raw []byte) ([]InterfaceStats, error) {
	var out []InterfaceStats
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // a header line
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 11 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		out = append(out, InterfaceStats{Name: name, RxBytes: n(0), RxErrors: n(2), TxBytes: n(8), TxErrors: n(10)})
	}
	return out, sc.Err()
}
