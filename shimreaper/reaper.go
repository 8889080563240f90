// Package shimreaper ends the containerd shims containerd itself has lost,
// or holds on to with no task to show for them.
//
// A task delete cut short (its caller, peapod, killed midway) leaves
// containerd 2.x holding the task's shim while it lists no task: only
// another delete lets that shim go (DeleteUnlisted).
//
// When a task create is cut short (its caller, peapod, killed midway) or
// containerd restarts while a shim starts, containerd can delete the
// task's bundle without stopping its shim: the shim then runs on for ever,
// with no task, no container and a deleted working directory, and nothing
// in containerd refers to it any more. Such a shim is an orphan: a shim
// process of peapod's containerd namespace and containerd address whose
// bundle (its working directory) is gone, holding no process of its own.
// The reaper looks for orphans now and then and kills those it has seen
// twice, so that a shim caught in its last moments of a normal shutdown
// (its bundle just deleted) is never taken for one.
package shimreaper

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"k8s.io/klog/v2"
)

// DeleteUnlisted deletes the task of container id, for a caller that found
// none listed: containerd may still hold its shim after a delete cut short.
// A task that is really gone is not an error.
func DeleteUnlisted(ctx context.Context, ts tasks.TasksClient, id string) error {
	_, err := ts.Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id})
	if err = errgrpc.ToNative(err); errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// Shim is a containerd shim process.
type Shim struct {
	PID int
	ID  string // the -id it serves
	// start is the process's start time (clock ticks since boot), so that
	// a PID reused between two sweeps is not taken for the same shim.
	start string
}

// Orphans lists the orphaned shims of containerd namespace ns whose
// containerd is at address, from the process table under procRoot.
func Orphans(procRoot, ns, address string) []Shim {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	address = strings.TrimPrefix(address, "unix://")
	parents := map[int]bool{} // PIDs that have a child
	var shims []Shim
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command, which is in parentheses and may hold spaces.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 20 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			parents[ppid] = true
		}
		cmdline, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		flags := shimFlags(args[1:])
		if flags["namespace"] != ns || strings.TrimPrefix(flags["address"], "unix://") != address || flags["id"] == "" {
			continue
		}
		cwd, err := os.Readlink(filepath.Join(procRoot, e.Name(), "cwd"))
		if err != nil || !strings.HasSuffix(cwd, " (deleted)") {
			continue
		}
		shims = append(shims, Shim{PID: pid, ID: flags["id"], start: fields[19]})
	}
	orphans := shims[:0]
	for _, s := range shims {
		if !parents[s.PID] { // a shim still holding a process is left alone
			orphans = append(orphans, s)
		}
	}
	return orphans
}

// shimFlags reads a shim's "-name value" flags.
func shimFlags(args []string) map[string]string {
	flags := map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		if name, ok := strings.CutPrefix(args[i], "-"); ok {
			flags[strings.TrimPrefix(name, "-")] = args[i+1]
			i++
		}
	}
	return flags
}

// Reaper kills orphaned shims seen in two sweeps in a row.
type Reaper struct {
	ProcRoot, Namespace, Address string
	seen                         map[Shim]bool
}

// Sweep looks for orphans once, kills those the last sweep saw too, and
// returns them.
func (r *Reaper) Sweep() []Shim {
	now := map[Shim]bool{}
	var killed []Shim
	for _, s := range Orphans(r.ProcRoot, r.Namespace, r.Address) {
		now[s] = true
		if !r.seen[s] {
			continue
		}
		if err := syscall.Kill(s.PID, syscall.SIGKILL); err != nil {
			klog.ErrorS(err, "Ending a shim containerd lost", "pid", s.PID, "id", s.ID)
			continue
		}
		klog.InfoS("Ended a shim containerd lost (no task, its bundle deleted)", "pid", s.PID, "id", s.ID)
		killed = append(killed, s)
		delete(now, s)
	}
	r.seen = now
	return killed
}

// Run sweeps every interval until ctx ends.
func (r *Reaper) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.Sweep()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
