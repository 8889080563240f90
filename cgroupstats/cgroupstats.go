// Package cgroupstats reads CPU and memory usage of a cgroup straight from
// the cgroup filesystem (v1 or v2): one file read per value instead of a
// round trip to containerd per container, so stats for many containers stay
// cheap.
package cgroupstats

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Root is where the cgroup filesystem is mounted.
const Root = "/sys/fs/cgroup"

// Stats is a cgroup's resource usage at one moment.
type Stats struct {
	CPUUsageNanos    uint64 // cumulative CPU time
	MemoryUsage      uint64
	MemoryWorkingSet uint64 // usage minus inactive file cache, as the kubelet counts it
	MemoryRSS        uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	SwapUsage        uint64
	HasSwap          bool
}

var (
	unifiedOnce sync.Once
	unified     bool
)

// isUnified reports whether the host uses cgroup v2 only.
func isUnified() bool {
	unifiedOnce.Do(func() {
		_, err := os.Stat(filepath.Join(Root, "cgroup.controllers"))
		unified = err == nil
	})
	return unified
}

// Read returns the usage of the cgroup at path (as in an OCI spec's
// cgroupsPath, relative to each hierarchy's root). A cgroup that does not
// exist (the container has not started) reads as os.ErrNotExist.
func Read(path string) (Stats, error) {
	if isUnified() {
		return readV2(filepath.Join(Root, path))
	}
	return readV1(path)
}

func readV1(path string) (Stats, error) {
	var s Stats
	usage, err := readUint(filepath.Join(Root, "cpuacct", path, "cpuacct.usage"))
	if err != nil {
		return s, err
	}
	s.CPUUsageNanos = usage
	mem := filepath.Join(Root, "memory", path)
	if s.MemoryUsage, err = readUint(filepath.Join(mem, "memory.usage_in_bytes")); err != nil {
		return s, err
	}
	kv, err := readKV(filepath.Join(mem, "memory.stat"))
	if err != nil {
		return s, err
	}
	s.MemoryWorkingSet = sub(s.MemoryUsage, kv["total_inactive_file"])
	s.MemoryRSS, s.PageFaults, s.MajorPageFaults = kv["total_rss"], kv["total_pgfault"], kv["total_pgmajfault"]
	if memsw, err := readUint(filepath.Join(mem, "memory.memsw.usage_in_bytes")); err == nil {
		s.SwapUsage, s.HasSwap = sub(memsw, s.MemoryUsage), true
	}
	return s, nil
}

func readV2(dir string) (Stats, error) {
	var s Stats
	cpu, err := readKV(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return s, err
	}
	s.CPUUsageNanos = cpu["usage_usec"] * 1000
	if s.MemoryUsage, err = readUint(filepath.Join(dir, "memory.current")); err != nil {
		return s, err
	}
	kv, err := readKV(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return s, err
	}
	s.MemoryWorkingSet = sub(s.MemoryUsage, kv["inactive_file"])
	s.MemoryRSS, s.PageFaults, s.MajorPageFaults = kv["anon"], kv["pgfault"], kv["pgmajfault"]
	if swap, err := readUint(filepath.Join(dir, "memory.swap.current")); err == nil {
		s.SwapUsage, s.HasSwap = swap, true
	}
	return s, nil
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// readKV reads a "key value" per line file such as memory.stat.
func readKV(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			out[k] = n
		}
	}
	if len(out) == 0 {
		return nil, errors.New(path + ": no values")
	}
	return out, nil
}

// OOMKills returns how many processes of the cgroup at path the kernel's
// OOM killer killed (v1 memory.oom_control, v2 memory.events "oom_kill").
func OOMKills(path string) (uint64, error) {
	file := filepath.Join(Root, "memory", path, "memory.oom_control")
	if isUnified() {
		file = filepath.Join(Root, path, "memory.events")
	}
	kv, err := readKV(file)
	if err != nil {
		return 0, err
	}
	return kv["oom_kill"], nil
}
