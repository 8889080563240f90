// Package hostcaps tells what this node can give a container: which cgroup
// controllers are usable, and whether peapod may lower an OOM score.
//
// The kubelet asks for what a node could have: hugepage limits for every page
// size the kernel knows, a swap limit, cpusets, a negative oom_score_adj. A
// runtime honours each where the host can and leaves it out where it cannot,
// as containerd's CRI does, instead of failing every container in runc.
package hostcaps

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Caps is what the host offers. The zero value offers nothing: no hugetlb,
// no swap accounting, no lowering of OOM scores.
type Caps struct {
	// CgroupV2 is a unified (cgroup v2 only) host.
	CgroupV2 bool
	// CgroupRoot is where the cgroup filesystem is mounted (/sys/fs/cgroup).
	CgroupRoot string
	// HugetlbV1 is a cgroup v1 host with a hugetlb hierarchy mounted. The
	// kernel may have the controller (in /proc/cgroups) without one.
	HugetlbV1 bool
	// Swap is whether memory+swap limits can be set (memory.memsw.* on v1,
	// memory.swap.max on v2).
	Swap bool
	// LowerOOMScore is whether peapod may give a process an oom_score_adj
	// below its own: it holds CAP_SYS_RESOURCE, and was not told otherwise.
	LowerOOMScore bool
	// OwnOOMScoreAdj is peapod's own oom_score_adj, the lowest it can give
	// without LowerOOMScore.
	OwnOOMScoreAdj int
}

// Probe reads this node's capabilities. With restrictOOM, OOM scores are
// never lowered below peapod's own even where peapod may (containerd's
// restrict_oom_score_adj, for a runtime that runs in a container).
func Probe(restrictOOM bool) Caps {
	c := probe()
	c.LowerOOMScore = c.LowerOOMScore && !restrictOOM
	klog.InfoS("Host capabilities", "cgroupV2", c.CgroupV2, "hugetlbV1", c.HugetlbV1,
		"swap", c.Swap, "lowerOOMScore", c.LowerOOMScore, "ownOOMScoreAdj", c.OwnOOMScoreAdj)
	return c
}

func probe() Caps {
	c := Caps{CgroupV2: cgroups.Mode() == cgroups.Unified, CgroupRoot: "/sys/fs/cgroup"}
	if c.CgroupV2 {
		c.Swap = exists(filepath.Join(c.CgroupRoot, ownCgroupV2(), "memory.swap.max"))
	} else {
		c.HugetlbV1 = v1Mounted("hugetlb")
		c.Swap = exists(filepath.Join(c.CgroupRoot, "memory", "memory.memsw.limit_in_bytes"))
	}
	c.OwnOOMScoreAdj = ownOOMScoreAdj()
	c.LowerOOMScore = hasCapability(unix.CAP_SYS_RESOURCE)
	return c
}

// Hugetlb reports whether hugepage limits can be set on a cgroup under
// parent (a cgroupfs path such as /kubepods/burstable/pod…): on v1, where a
// hugetlb hierarchy is mounted; on v2, where the parent offers the
// controller (the nearest parent that exists, since runc creates the rest).
func (c Caps) Hugetlb(parent string) bool {
	if !c.CgroupV2 {
		return c.HugetlbV1
	}
	dir := filepath.Join(c.CgroupRoot, filepath.Clean("/"+parent))
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers")); err == nil {
			return slices.Contains(strings.Fields(string(b)), "hugetlb")
		}
		if dir == c.CgroupRoot || dir == "/" {
			return false
		}
		dir = filepath.Dir(dir)
	}
}

// OOMScoreAdj is the oom_score_adj a process can be given for want: want
// itself, or peapod's own where want is lower and peapod may not lower it
// (runc fails with "can't get final child's PID from pipe" otherwise).
func (c Caps) OOMScoreAdj(want int) int {
	if want < c.OwnOOMScoreAdj && !c.LowerOOMScore {
		return c.OwnOOMScoreAdj
	}
	return want
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// v1Mounted reports whether a cgroup v1 hierarchy with the controller is
// mounted.
func v1Mounted(controller string) bool {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		klog.ErrorS(err, "Reading the mount table for cgroup hierarchies")
		return false
	}
	for _, m := range mounts {
		if slices.Contains(strings.Split(m.VFSOptions, ","), controller) {
			return true
		}
	}
	return false
}

// ownCgroupV2 is peapod's own cgroup on a v2 host ("/" when unknown).
func ownCgroupV2() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "/"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return path
		}
	}
	return "/"
}

func ownOOMScoreAdj() int {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// hasCapability reports whether peapod's effective set holds capability c.
func hasCapability(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(uint(c)%32)) != 0
}
