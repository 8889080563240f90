package shimreaper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
)

// A lost task is one whose shim still runs it while containerd no longer
// lists it. containerd 1.6 loses one when its clean-up after an earlier
// task of the same ID, cut short, runs late: that clean-up unlists the ID.
// containerd can then neither signal nor wait for the task, but its shim
// can: LostTask talks to the shim directly, over the socket its bundle
// names, as containerd itself does when it reloads its shims.

// LostTask is the shim of a task containerd lost.
type LostTask struct {
	ID string
	// PID is the shim's, if it is the task's own (0: a pod's shim, which
	// serves other tasks too).
	PID    int
	bundle string
	conn   net.Conn
	client *ttrpc.Client
	task   shimTask
}

// FindLostTask connects to the shim that runs task id for containerd at
// address, in namespace ns: a shim of the task's own, or one serving a
// pod's tasks together (containerd 2.x's sandboxes), found through the
// task's bundle beside those of the namespace's other shims. A task whose
// bundle is gone, or whose shim does not answer, is not found.
func FindLostTask(ctx context.Context, procRoot, ns, address, id string) (*LostTask, error) {
	procs := shims(procRoot, ns, address)
	t := &LostTask{ID: id}
	for _, p := range procs {
		if p.ID == id && p.command == "" && !p.gone {
			t.PID, t.bundle = p.PID, p.bundle
			break
		}
	}
	if t.bundle == "" {
		for _, p := range procs {
			if p.command == "" && !p.gone {
				if b := filepath.Join(filepath.Dir(p.bundle), id); isDir(b) {
					t.bundle = b
				}
				break
			}
		}
	}
	if t.bundle == "" {
		return nil, fmt.Errorf("no shim runs task %s: %w", id, errdefs.ErrNotFound)
	}
	if err := t.connect(ctx); err != nil {
		return nil, fmt.Errorf("connecting to the shim of task %s (bundle %s): %w", id, t.bundle, err)
	}
	return t, nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// bootstrap is the part of a bundle's bootstrap.json (containerd 2.x)
// that says how to reach its shim.
type bootstrap struct {
	Version  int    `json:"version"`
	Address  string `json:"address"`
	Protocol string `json:"protocol"`
}

// connect reads the shim's address from its bundle: bootstrap.json from
// containerd 2.x, else the address file of the shims before (task API v2).
func (t *LostTask) connect(ctx context.Context) error {
	params := bootstrap{Version: 2, Protocol: "ttrpc"}
	if b, err := os.ReadFile(filepath.Join(t.bundle, "bootstrap.json")); err == nil {
		if err := json.Unmarshal(b, &params); err != nil {
			return fmt.Errorf("reading %s/bootstrap.json: %w", t.bundle, err)
		}
	} else if b, err := os.ReadFile(filepath.Join(t.bundle, "address")); err == nil {
		params.Address = strings.TrimSpace(string(b))
	} else {
		return fmt.Errorf("the bundle %s names no shim address: %w", t.bundle, err)
	}
	if params.Protocol != "ttrpc" {
		return fmt.Errorf("shim protocol %q: %w", params.Protocol, errdefs.ErrNotImplemented)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", strings.TrimPrefix(params.Address, "unix://"))
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound) // the shim is gone
	} else if err != nil {
		return err
	}
	t.conn, t.client = conn, ttrpc.NewClient(conn)
	switch params.Version {
	case 2:
		t.task = v2Task{taskv2.NewTTRPCTaskClient(t.client)}
	case 3:
		t.task = v3Task{taskv3.NewTTRPCTaskClient(t.client)}
	default:
		t.Close()
		return fmt.Errorf("shim task API v%d: %w", params.Version, errdefs.ErrNotImplemented)
	}
	return nil
}

// Close closes the connection to the shim.
func (t *LostTask) Close() {
	if t.client != nil {
		t.client.Close()
	}
}

// Kill signals the task's init process.
func (t *LostTask) Kill(ctx context.Context, sig syscall.Signal) error {
	return errgrpc.ToNative(t.task.kill(ctx, t.ID, uint32(sig)))
}

// Wait waits for the task to exit and returns its exit status.
func (t *LostTask) Wait(ctx context.Context) (uint32, time.Time, error) {
	code, at, err := t.task.wait(ctx, t.ID)
	return code, at, errgrpc.ToNative(err)
}

// Release deletes the exited task in its shim (which removes the OCI
// runtime's container and unmounts its root filesystem), shuts the shim
// down, and removes the bundle, as containerd does with a task it deletes.
func (t *LostTask) Release(ctx context.Context) error {
	if err := errgrpc.ToNative(t.task.delete(ctx, t.ID)); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting lost task %s in its shim: %w", t.ID, err)
	}
	if t.PID != 0 {
		// The shim exits as it answers, which may break the call.
		_ = t.task.shutdown(ctx)
		t.Close()
		for i := 0; i < 100 && syscall.Kill(t.PID, 0) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return removeBundle(t.bundle)
}

// removeBundle removes a task's bundle and the work directory it links to.
func removeBundle(bundle string) error {
	var errs []error
	if work, err := os.Readlink(filepath.Join(bundle, "work")); err == nil {
		errs = append(errs, os.RemoveAll(work))
	}
	// An empty rootfs directory is all the shim's unmount leaves.
	if err := os.Remove(filepath.Join(bundle, "rootfs")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("the root filesystem of bundle %s: %w", bundle, err))
		return errors.Join(errs...)
	}
	errs = append(errs, os.RemoveAll(bundle))
	return errors.Join(errs...)
}

// shimTask is the part of a shim's task API a lost task needs, in either
// version.
type shimTask interface {
	kill(ctx context.Context, id string, sig uint32) error
	wait(ctx context.Context, id string) (uint32, time.Time, error)
	delete(ctx context.Context, id string) error
	shutdown(ctx context.Context) error
}

type v2Task struct{ c taskv2.TTRPCTaskService }

func (t v2Task) kill(ctx context.Context, id string, sig uint32) error {
	_, err := t.c.Kill(ctx, &taskv2.KillRequest{ID: id, Signal: sig})
	return err
}

func (t v2Task) wait(ctx context.Context, id string) (uint32, time.Time, error) {
	r, err := t.c.Wait(ctx, &taskv2.WaitRequest{ID: id})
	return r.GetExitStatus(), r.GetExitedAt().AsTime(), err
}

func (t v2Task) delete(ctx context.Context, id string) error {
	_, err := t.c.Delete(ctx, &taskv2.DeleteRequest{ID: id})
	return err
}

func (t v2Task) shutdown(ctx context.Context) error {
	_, err := t.c.Shutdown(ctx, &taskv2.ShutdownRequest{})
	return err
}

type v3Task struct{ c taskv3.TTRPCTaskService }

func (t v3Task) kill(ctx context.Context, id string, sig uint32) error {
	_, err := t.c.Kill(ctx, &taskv3.KillRequest{ID: id, Signal: sig})
	return err
}

func (t v3Task) wait(ctx context.Context, id string) (uint32, time.Time, error) {
	r, err := t.c.Wait(ctx, &taskv3.WaitRequest{ID: id})
	return r.GetExitStatus(), r.GetExitedAt().AsTime(), err
}

func (t v3Task) delete(ctx context.Context, id string) error {
	_, err := t.c.Delete(ctx, &taskv3.DeleteRequest{ID: id})
	return err
}

func (t v3Task) shutdown(ctx context.Context) error {
	_, err := t.c.Shutdown(ctx, &taskv3.ShutdownRequest{})
	return err
}
