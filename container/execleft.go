package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// The fifos of an exec process are made by containerd's cio in a directory
// of their own (one per exec) in execFifoDir, and removed when the exec is
// done. A peapod that dies leaves them, and what it left may hold a shim:
// the shim starts an exec by opening its output fifos for writing, an open
// that waits for a reader, and does so holding the process's lock. On
// containerd 1.6 that blocks the whole shim (its exit processing, and so
// every State of its tasks: every task List and Get touching the pod waits
// containerd's 2 s and answers UNKNOWN) for as long as no one reads, which,
// once the peapod that asked for the start has died, is for ever. At
// start-up, OpenLeftExecs opens every such fifo for reading, which lets a
// waiting open through, before anything asks containerd about tasks; the
// containers step of recovery then ends those execs (endLeftExecs): no one
// will read their output, and their caller has had its error.

// execFifoDir holds the fifos of a container's exec processes, in its state
// directory: recovery knows whose they are, and they go with the container.
func (m *Manager) execFifoDir(id string) string {
	return filepath.Join(m.stateDir(id), "exec")
}

// legacyExecFifoDir is where the fifos of every exec were made before they
// had a directory per container.
func (m *Manager) legacyExecFifoDir() string {
	return filepath.Join(m.config.StateDir, "fifo")
}

// leftExec is the fifo directory of an exec a dead peapod left, with the
// read ends OpenLeftExecs holds open.
type leftExec struct {
	container string // "" in the legacy layout
	dir       string
	execIDs   []string
	fds       []int
}

// leftExecs are the execs OpenLeftExecs found, which endLeftExecs ends.
type leftExecs struct {
	mu   sync.Mutex
	left []leftExec
}

// OpenLeftExecs opens for reading, without waiting, the output fifos of
// every exec a dead peapod left (see above). It only touches files, and is
// recovery's first step. It may be called again: what it holds is kept.
func (m *Manager) OpenLeftExecs(context.Context) error {
	m.leftExecs.mu.Lock()
	defer m.leftExecs.mu.Unlock()
	if m.leftExecs.left != nil {
		return nil
	}
	m.leftExecs.left = []leftExec{}
	ctrs, err := os.ReadDir(filepath.Join(m.config.StateDir, "containers"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, c := range ctrs {
		m.leftExecs.left = append(m.leftExecs.left, openExecSets(c.Name(), m.execFifoDir(c.Name()))...)
	}
	m.leftExecs.left = append(m.leftExecs.left, openExecSets("", m.legacyExecFifoDir())...)
	for _, l := range m.leftExecs.left {
		klog.InfoS("Found the fifos of an exec a dead peapod left; reading them lets its shim go on", "container", l.container, "exec", l.execIDs, "dir", l.dir)
	}
	return nil
}

// openExecSets opens the output fifos of every exec fifo directory in root
// (each named by cio, its fifos "<exec ID>-stdin|stdout|stderr").
func openExecSets(container, root string) []leftExec {
	sets, _ := os.ReadDir(root)
	var left []leftExec
	for _, s := range sets {
		l := leftExec{container: container, dir: filepath.Join(root, s.Name())}
		fifos, _ := os.ReadDir(l.dir)
		for _, f := range fifos {
			execID, stream, ok := cutLast(f.Name(), "-")
			if !ok {
				continue
			}
			if !slices.Contains(l.execIDs, execID) {
				l.execIDs = append(l.execIDs, execID)
			}
			if stream != "stdout" && stream != "stderr" {
				continue // the shim opens stdin itself without waiting
			}
			fd, err := unix.Open(filepath.Join(l.dir, f.Name()), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				klog.ErrorS(err, "Opening the fifo of an exec a dead peapod left", "path", filepath.Join(l.dir, f.Name()))
				continue
			}
			l.fds = append(l.fds, fd)
		}
		left = append(left, l)
	}
	return left
}

// endLeftExecs kills and deletes the exec processes OpenLeftExecs found,
// then lets go of their fifos. The index must be loaded. Its errors are
// logged, not returned: a shim that does not answer must not hold recovery,
// and what was not ended is found again at the next start-up.
func (m *Manager) endLeftExecs(ctx context.Context) {
	m.leftExecs.mu.Lock()
	left := m.leftExecs.left
	m.leftExecs.left = []leftExec{}
	m.leftExecs.mu.Unlock()
	for _, l := range left {
		ended := true
		if l.container != "" {
			for _, execID := range l.execIDs {
				if err := m.endExec(ctx, l.container, execID); err != nil {
					klog.ErrorS(err, "Ending an exec a dead peapod left", "container", l.container, "exec", execID)
					ended = false
				}
			}
		}
		for _, fd := range l.fds {
			unix.Close(fd)
		}
		if ended {
			if err := os.RemoveAll(l.dir); err != nil {
				klog.ErrorS(err, "Removing the fifos of an exec a dead peapod left", "dir", l.dir)
			}
		}
	}
}

// endExec kills and deletes exec process execID of container id, whether
// it was started or not; one containerd does not have is ended already. Its
// start may be under way (the shim went on once its fifos were opened): a
// process created when asked may be running by the time its delete comes,
// which then fails, and it is asked again.
func (m *Manager) endExec(ctx context.Context, id, execID string) error {
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	ts := m.client.TaskService()
	for {
		got, err := ts.Get(ctx, &tasks.GetRequest{ContainerID: id, ExecID: execID})
		if err = errgrpc.ToNative(err); errdefs.IsNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		p := got.GetProcess()
		klog.InfoS("Ending an exec a dead peapod left", "container", id, "exec", execID, "pid", p.GetPid(), "status", p.GetStatus())
		if p.GetStatus() != tasktypes.Status_CREATED && p.GetStatus() != tasktypes.Status_STOPPED {
			_, err := ts.Kill(ctx, &tasks.KillRequest{ContainerID: id, ExecID: execID, Signal: uint32(unix.SIGKILL)})
			if err = errgrpc.ToNative(err); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("killing: %w", err)
			}
			if _, err := ts.Wait(ctx, &tasks.WaitRequest{ContainerID: id, ExecID: execID}); err != nil {
				if err = errgrpc.ToNative(err); !errdefs.IsNotFound(err) {
					return fmt.Errorf("waiting for its exit: %w", err)
				}
			}
		}
		_, err = ts.DeleteProcess(ctx, &tasks.DeleteProcessRequest{ContainerID: id, ExecID: execID})
		switch err = errgrpc.ToNative(err); {
		case err == nil || errdefs.IsNotFound(err):
			return nil
		case errdefs.IsFailedPrecondition(err) && p.GetStatus() == tasktypes.Status_CREATED:
			// Started meanwhile: kill it.
			if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
				return err
			}
		default:
			return fmt.Errorf("deleting: %w", err)
		}
	}
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i <= 0 {
		return "", "", false
	}
	return s[:i], s[i+len(sep):], true
}
