// Package cgroupstats reads CPU and memory usage of a cgroup straight from
// the cgroup filesystem (v1 or v2): one file read per value instead of a
// round trip to containerd per container, so stats for many containers stay
// cheap.
package cgroupstats

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
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
	var inactiveFile uint64
	if err := readKV(filepath.Join(mem, "memory.stat"),
		field{"total_inactive_file", &inactiveFile}, field{"total_rss", &s.MemoryRSS},
		field{"total_pgfault", &s.PageFaults}, field{"total_pgmajfault", &s.MajorPageFaults}); err != nil {
		return s, err
	}
	s.MemoryWorkingSet = sub(s.MemoryUsage, inactiveFile)
	if memsw, err := readUint(filepath.Join(mem, "memory.memsw.usage_in_bytes")); err == nil {
		s.SwapUsage, s.HasSwap = sub(memsw, s.MemoryUsage), true
	}
	return s, nil
}

func readV2(dir string) (Stats, error) {
	var s Stats
	var usageUsec uint64
	if err := readKV(filepath.Join(dir, "cpu.stat"), field{"usage_usec", &usageUsec}); err != nil {
		return s, err
	}
	s.CPUUsageNanos = usageUsec * 1000
	var err error
	if s.MemoryUsage, err = readUint(filepath.Join(dir, "memory.current")); err != nil {
		return s, err
	}
	var inactiveFile uint64
	if err := readKV(filepath.Join(dir, "memory.stat"),
		field{"inactive_file", &inactiveFile}, field{"anon", &s.MemoryRSS},
		field{"pgfault", &s.PageFaults}, field{"pgmajfault", &s.MajorPageFaults}); err != nil {
		return s, err
	}
	s.MemoryWorkingSet = sub(s.MemoryUsage, inactiveFile)
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

// The kubelet reads the stats of every container and pod every few
// seconds, each a handful of cgroup files: they are read into pooled
// buffers and parsed in place, so that the stats calls, frequent and
// proportional to the pods on the node, make little garbage for the GC.
// A cgroup file holds at most a few kilobytes (memory.stat).
const maxFileSize = 16 << 10

var buffers = sync.Pool{New: func() any { b := make([]byte, maxFileSize); return &b }}

// readFile calls parse with the content of the cgroup file at path, which
// is valid only during the call.
func readFile(path string, parse func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	n := 0
	for n < len(*buf) {
		m, err := f.Read((*buf)[n:])
		n += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if n == len(*buf) {
		return fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return parse((*buf)[:n])
}

func readUint(path string) (uint64, error) {
	var v uint64
	err := readFile(path, func(b []byte) error {
		var err error
		v, err = strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
		return err
	})
	return v, err
}

// field is a key of a "key value" per line file, and where its value goes.
type field struct {
	key string
	dst *uint64
}

// readKV reads the values of fields from a "key value" per line file such
// as memory.stat; a key the file lacks reads as 0, but a file with no
// values at all is an error.
func readKV(path string, fields ...field) error {
	return readFile(path, func(b []byte) error {
		values := 0
		for line := range bytes.Lines(b) {
			k, v, ok := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte(" "))
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				continue
			}
			values++
			for _, f := range fields {
				if string(k) == f.key {
					*f.dst = n
				}
			}
		}
		if values == 0 {
			return errors.New(path + ": no values")
		}
		return nil
	})
}

// OOMKills returns how many processes of the cgroup at path the kernel's
// OOM killer killed (v1 memory.oom_control, v2 memory.events "oom_kill").
func OOMKills(path string) (uint64, error) {
	file := filepath.Join(Root, "memory", path, "memory.oom_control")
	if isUnified() {
		file = filepath.Join(Root, path, "memory.events")
	}
	var kills uint64
	err := readKV(file, field{"oom_kill", &kills})
	return kills, err
}
