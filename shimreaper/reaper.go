// Package shimreaper ends the containerd shims containerd itself has lost,
// or holds on to with no task to show for them.
//
// A task delete cut short (its caller, peapod, killed midway) leaves
// containerd 2.x holding the task's shim while it lists no task: only
// another delete lets that shim go (DeleteTask).
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
	"fmt"
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

// DeleteTask deletes the task of container id, also for a caller that
// found none listed: containerd may still hold its shim after a delete cut
// short. A task that is really gone is not an error, nor is a shim that
// closed its connection during the delete (see DeleteClosed).
func DeleteTask(ctx context.Context, ts tasks.TasksClient, id string) error {
	_, err := ts.Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id})
	return DeleteClosed(ctx, ts, id, errgrpc.ToNative(err))
}

// DeleteClosed settles a delete of the task of container id that failed
// with err because the task's shim closed its connection under it
// (ShimClosed): the shim exited, most often because another delete of the
// task, cut short when its caller died, ended it, and containerd 1.6 then
// finishes the delete but answers the closing. The task is deleted again,
// which finds it gone; a task still there is Unavailable, for the caller to
// try again. NotFound is success; any other err is returned as it is.
func DeleteClosed(ctx context.Context, ts tasks.TasksClient, id string, err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	if !ShimClosed(err) {
		return err
	}
	_, derr := ts.Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id})
	if derr = errgrpc.ToNative(derr); derr != nil && !errdefs.IsNotFound(derr) {
		return fmt.Errorf("%v, then %v: %w", err, derr, errdefs.ErrUnavailable)
	}
	return nil
}

// ShimClosed reports whether err is containerd's answer for a call whose
// shim closed its connection during the call.
func ShimClosed(err error) bool {
	return err != nil && strings.Contains(err.Error(), "ttrpc: closed")
}

// Shim is a containerd shim process.
type Shim struct {
	PID int
	ID  string // the -id it serves
	// start is the process's start time (clock ticks since boot), so that
	// a PID reused between two sweeps is not taken for the same shim.
	start string
}

// process is a shim process as the process table shows it.
type process struct {
	Shim
	// command is the shim's subcommand: "" for a shim serving tasks,
	// "start" while containerd starts one, "delete" for the clean-up
	// containerd runs after a shim is gone.
	command string
	// bundle is the shim's working directory, its task's bundle; gone
	// when the bundle was deleted.
	bundle string
	gone   bool
	// holding: the shim has a child process (a container's).
	holding bool
}

// shims lists the shim processes of containerd namespace ns whose
// containerd is at address, from the process table under procRoot.
func shims(procRoot, ns, address string) []process {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	address = strings.TrimPrefix(address, "unix://")
	parents := map[int]bool{} // PIDs that have a child
	var out []process
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
		flags, command := shimArgs(args[1:])
		if flags["namespace"] != ns || strings.TrimPrefix(flags["address"], "unix://") != address || flags["id"] == "" {
			continue
		}
		cwd, err := os.Readlink(filepath.Join(procRoot, e.Name(), "cwd"))
		if err != nil {
			continue
		}
		bundle, gone := strings.CutSuffix(cwd, " (deleted)")
		out = append(out, process{Shim: Shim{PID: pid, ID: flags["id"], start: fields[19]}, command: command, bundle: bundle, gone: gone})
	}
	for i := range out {
		out[i].holding = parents[out[i].PID]
	}
	return out
}

// Orphans lists the orphaned shims of containerd namespace ns whose
// containerd is at address, from the process table under procRoot.
func Orphans(procRoot, ns, address string) []Shim {
	var orphans []Shim
	for _, p := range shims(procRoot, ns, address) {
		// A shim still holding a process is left alone.
		if p.command == "" && p.gone && !p.holding {
			orphans = append(orphans, p.Shim)
		}
	}
	return orphans
}

// Settling reports whether containerd is not yet done with an earlier
// task of container id: a shim of it whose bundle is still there runs
// (serving, starting or shutting down), or containerd's clean-up after one
// (its "delete") does. containerd 1.6 ends that clean-up by unlisting the
// ID, and by reporting it exited (255) if a task of that ID is listed: a
// new task made before it ends is lost. Orphans, whose bundle containerd
// deleted and forgot, are the reaper's and do not count.
func Settling(procRoot, ns, address, id string) bool {
	for _, p := range shims(procRoot, ns, address) {
		if p.ID == id && (p.command == "delete" || !p.gone) {
			return true
		}
	}
	return false
}

// shimArgs reads a shim's "-name value" flags and its subcommand.
func shimArgs(args []string) (map[string]string, string) {
	flags := map[string]string{}
	command := ""
	for i := 0; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i], "-")
		if !ok {
			command = args[i]
			continue
		}
		name = strings.TrimPrefix(name, "-")
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			flags[name] = args[i+1]
			i++
		} else {
			flags[name] = "true" // a boolean flag (-debug)
		}
	}
	return flags, command
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
