package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
)

// A fifo relay (the IO process of a container with stdin and no terminal)
// is started by peapod, so it begins in peapod's cgroup, where stopping
// peapod would end it too: systemd's KillMode=control-group kills a
// service's whole cgroup. It moves to a cgroup of its own beside the
// container's, under the pod's, in every hierarchy (so its memory counts
// against the pod, as CRI-O's conmon does), and outlives peapod there.
// (A peapod in a container of its own still takes its PID namespace's
// processes with it when it ends: run it with the host's.)

// relayCgroup is the cgroup path of container c's fifo relay.
func relayCgroup(c *Container) string {
	return path.Join(path.Dir(c.CgroupsPath), "peapod-io-"+c.ID)
}

// cgroupDirs returns the directories of cgroup rel in every cgroup
// hierarchy mounted (v1 controllers, v1 named, v2), except cpuset, whose
// new cgroups take no process before their CPUs and memory nodes are set.
func cgroupDirs(rel string) ([]string, error) {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	var dirs []string
	for _, m := range mounts {
		if m.FSType == "cgroup" && slices.Contains(strings.Split(m.VFSOptions, ","), "cpuset") {
			continue
		}
		dirs = append(dirs, filepath.Join(m.Mountpoint, filepath.Clean("/"+rel)))
	}
	return dirs, nil
}

// moveToCgroup creates cgroup rel in every hierarchy and moves pid into it.
func moveToCgroup(pid int, rel string) error {
	dirs, err := cgroupDirs(rel)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("moving %d into %s: %w", pid, d, err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroup removes cgroup rel from every hierarchy; a missing one is
// fine. A relay still draining the output of its deleted task keeps its
// cgroup busy for a moment: wait for it, up to a second.
func removeCgroup(rel string) error {
	dirs, err := cgroupDirs(rel)
	if err != nil {
		return err
	}
	var errs []error
	for try := 0; ; try++ {
		errs = errs[:0]
		busy := false
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
				busy = busy || errors.Is(err, syscall.EBUSY)
			}
		}
		if !busy || try == 20 {
			return errors.Join(errs...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
