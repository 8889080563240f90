package container

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"
)

const (
	// maxExecOutput bounds what ExecSync keeps of each stream, as the kubelet does.
	maxExecOutput = 16 << 20
	// ioDrainTimeout bounds the wait for an exec's output after it exited
	// (a background child may hold the pipes open).
	ioDrainTimeout = 2 * time.Second
)

// ExecResult is the outcome of ExecSync.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
}

// ExecSync runs cmd in a running container and returns its output and exit
// code. With a timeout, a command still running then is killed and the call
// fails with DeadlineExceeded.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (*ExecResult, error) {
	if len(cmd) == 0 {
		return nil, fmt.Errorf("no command to exec: %w", errdefs.ErrInvalidArgument)
	}
	c, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.State != StateRunning {
		return nil, fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	ctr, err := m.client.LoadContainer(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading spec of container %s: %w", c.ID, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("loading task of container %s: %w", c.ID, err)
	}
	pspec := *spec.Process
	pspec.Args, pspec.Terminal = cmd, false

	fifoDir := filepath.Join(m.config.StateDir, "fifo")
	if err := os.MkdirAll(fifoDir, 0o700); err != nil {
		return nil, err
	}
	stdout, stderr := &boundedBuffer{max: maxExecOutput}, &boundedBuffer{max: maxExecOutput}
	execID := "exec-" + newID()[:16]
	proc, err := task.Exec(ctx, execID, &pspec, cio.NewCreator(cio.WithStreams(nil, stdout, stderr), cio.WithFIFODir(fifoDir)))
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
		defer cancel()
		if _, err := proc.Delete(dctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "Deleting exec process", "container", c.ID, "exec", execID)
		}
	}()
	exited, err := proc.Wait(ctx)
	if err != nil {
		return nil, err
	}
	if err := proc.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting exec in container %s: %w", c.ID, err)
	}
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	select {
	case st := <-exited:
		drainIO(proc.IO())
		return &ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(st.ExitCode())}, nil
	case <-deadline:
		_ = proc.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		<-exited
		return nil, fmt.Errorf("command %q in container %s timed out after %s: %w", cmd, c.ID, timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		_ = proc.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		return nil, ctx.Err()
	}
}

// drainIO waits, boundedly, for an exec's output to be copied.
func drainIO(io cio.IO) {
	done := make(chan struct{})
	go func() { io.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(ioDrainTimeout):
		io.Cancel()
	}
	io.Close()
}

// boundedBuffer keeps the first max bytes written to it and drops the rest.
type boundedBuffer struct {
	bytes.Buffer
	max int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// ReopenLog makes a running container's log driver reopen its log file,
// after the kubelet rotated it.
func (m *Manager) ReopenLog(ctx context.Context, id string) error {
	c, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	if c.State != StateRunning {
		return fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if c.LogPath == "" {
		return nil
	}
	raw, err := os.ReadFile(m.pidFile(c.ID))
	if err != nil {
		return fmt.Errorf("finding the log driver of container %s: %w", c.ID, err)
	}
	var pid int
	if _, err := fmt.Sscan(string(raw), &pid); err != nil || pid <= 0 {
		return fmt.Errorf("bad log driver pid file of container %s", c.ID)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return fmt.Errorf("signalling the log driver of container %s: %w", c.ID, err)
	}
	for i := 0; i < 50; i++ { // the kubelet expects the file back when we answer
		if _, err := os.Stat(c.LogPath); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("log driver of container %s did not reopen %s", c.ID, c.LogPath)
}
