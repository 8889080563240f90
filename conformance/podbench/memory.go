package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// pssMiB is a process's proportional set size, from /proc/PID/smaps_rollup:
// its private memory plus its share of the memory it shares, so that the
// sum over processes is the memory they use together.
func pssMiB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Pss:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		if err != nil {
			return 0, fmt.Errorf("memory of process %d: Pss %q: %w", pid, rest, err)
		}
		return kb / 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	return 0, fmt.Errorf("memory of process %d: no Pss line in smaps_rollup", pid)
}

// sumPSS is the PSS of several processes together.
func sumPSS(pids []int) (float64, error) {
	var total float64
	for _, pid := range pids {
		m, err := pssMiB(pid)
		if err != nil {
			return 0, err
		}
		total += m
	}
	return total, nil
}

// processesRunning returns every process whose executable is binary (an
// absolute path with no symbolic links) and whose command line mentions
// arg. A binary replaced since the process started (make build) reads
// "PATH (deleted)": it counts too.
func processesRunning(binary, arg string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue // kernel threads, and processes gone meanwhile
		}
		if exe != binary && exe != binary+" (deleted)" {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), arg) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// ioPSS is the PSS of the processes running binary whose command line
// mentions match (the runtime's IO server's directory, or the pods' log
// root for IO processes per container), and how many there are: other lab
// instances run the same binary for pods of their own, which are not ours
// to count. A process that exits between the listing and the read is
// skipped.
func ioPSS(binary, match string) (float64, int, error) {
	pids, err := processesRunning(binary, match)
	if err != nil {
		return 0, 0, err
	}
	var total float64
	n := 0
	for _, pid := range pids {
		m, err := pssMiB(pid)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		total += m
		n++
	}
	return total, n, nil
}

// memoryPoint is a runtime's memory at one point of the scale section.
type memoryPoint struct {
	pods, containers int
	own              float64 // PSS of its own processes (but containerd), MiB
	hasOwn           bool    // it has processes of its own beside containerd
	io               float64 // PSS of its IO processes, MiB
	ioProcs          int
	hasIO            bool
	containerdDelta  float64 // containerd's PSS growth since before its pods, MiB
	hasContainerd    bool
}

// footprint is the memory the runtime's pods cost beyond what both
// runtimes share (shims, pause): its own processes, its IO processes and
// what containerd grew by.
func (m memoryPoint) footprint() float64 { return m.own + m.io + m.containerdDelta }

func (m memoryPoint) perContainer() float64 {
	if m.containers == 0 {
		return 0
	}
	return m.footprint() / float64(m.containers)
}

// measuresMemory reports whether there is any memory to measure for t.
func (b *bench) measuresMemory(t *target) bool {
	return len(t.pids) > 0 || t.ioBinary != "" || b.opts.containerdPID > 0
}

// containerdPSS is the daemon's PSS, 0 when -containerd-pid is not given.
func (b *bench) containerdPSS() (float64, error) {
	if b.opts.containerdPID == 0 {
		return 0, nil
	}
	return pssMiB(b.opts.containerdPID)
}

// measureMemory measures t's footprint now; containerdBefore is the
// daemon's PSS before t's pods were made.
func (b *bench) measureMemory(t *target, pods, containers int, containerdBefore float64) (memoryPoint, error) {
	m := memoryPoint{pods: pods, containers: containers}
	// When the runtime is containerd itself (the reference), its own
	// memory is containerd's, counted by the delta alone.
	own := slices.DeleteFunc(slices.Clone(t.pids), func(pid int) bool { return pid == b.opts.containerdPID })
	var err error
	if len(own) > 0 {
		m.hasOwn = true
		if m.own, err = sumPSS(own); err != nil {
			return m, err
		}
	}
	if t.ioBinary != "" {
		m.hasIO = true
		match := t.ioMatch
		if match == "" {
			match = b.logRoot
		}
		if m.io, m.ioProcs, err = ioPSS(t.ioBinary, match); err != nil {
			return m, err
		}
	}
	if b.opts.containerdPID > 0 {
		m.hasContainerd = true
		now, err := b.containerdPSS()
		if err != nil {
			return m, err
		}
		m.containerdDelta = now - containerdBefore
	}
	return m, nil
}
