package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	utilexec "k8s.io/utils/exec"

	"github.com/peapod-cri/peapod/containerio"
)

const (
	// maxExecOutput bounds what ExecSync keeps of stdout and stderr
	// together: the answer must fit the kubelet's 16 MiB gRPC message limit,
	// with room for the rest of the message.
	maxExecOutput = 16<<20 - 64<<10
	// ioDrainTimeout bounds the wait for an exec's output after it exited
	// (a background child may hold the pipes open), and for a container's
	// output after the release of its task (see revealExit).
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
	budget := &outputBudget{left: maxExecOutput}
	stdout, stderr := &boundedBuffer{budget: budget}, &boundedBuffer{budget: budget}
	x, err := m.startExec(ctx, id, cmd, false, cio.WithStreams(nil, stdout, stderr))
	if err != nil {
		return nil, err
	}
	defer x.delete()
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	select {
	case st := <-x.exited:
		if err := st.Error(); err != nil {
			// The wait broke (containerd restarted): the exit code is unknown.
			return nil, fmt.Errorf("waiting for %q in container %s: %v: %w", cmd, id, err, errdefs.ErrUnavailable)
		}
		drainIO(x.proc.IO())
		return &ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(st.ExitCode())}, nil
	case <-deadline:
		x.kill()
		return nil, fmt.Errorf("command %q in container %s timed out after %s: %w", cmd, id, timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		x.kill()
		return nil, ctx.Err()
	}
}

// Exec runs cmd in a running container with the caller's streams (a
// streaming exec session), following terminal resizes. A non-zero exit is
// returned as an error carrying the exit code, as the streaming server
// expects.
func (m *Manager) Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	// The shim holds the stdin FIFO open, so the end of the client's stdin
	// reaches the process only by closing it in the shim explicitly.
	var stdinPipe *io.PipeReader
	var stdinWriter *io.PipeWriter
	if stdin != nil {
		stdinPipe, stdinWriter = io.Pipe()
	}
	opts := []cio.Opt{cio.WithStreams(readerOrNil(stdinPipe), stdout, stderr)}
	if tty {
		opts = append(opts, cio.WithTerminal)
	}
	x, err := m.startExec(ctx, id, cmd, tty, opts...)
	if err != nil {
		return err
	}
	defer x.delete()
	if stdinPipe != nil {
		// Once the process is gone nobody reads the pipe: the copy below
		// must not block on it.
		defer stdinPipe.CloseWithError(io.ErrClosedPipe)
	}
	if stdin != nil {
		go func() {
			_, _ = io.Copy(stdinWriter, stdin)
			_ = stdinWriter.Close()
			if err := x.proc.CloseIO(x.ctx, client.WithStdinCloser); err != nil && !errdefs.IsNotFound(err) {
				klog.V(4).InfoS("Closing exec stdin", "container", id, "err", err)
			}
		}()
	}
	if tty && resize != nil {
		go func() {
			for size := range resize {
				if err := x.proc.Resize(context.WithoutCancel(ctx), uint32(size.Width), uint32(size.Height)); err != nil {
					klog.V(4).InfoS("Resizing exec terminal", "container", id, "err", err)
				}
			}
		}()
	}
	select {
	case st := <-x.exited:
		if err := st.Error(); err != nil {
			return fmt.Errorf("waiting for %q in container %s: %v: %w", cmd, id, err, errdefs.ErrUnavailable)
		}
		drainIO(x.proc.IO())
		if code := st.ExitCode(); code != 0 {
			return utilexec.CodeExitError{Err: fmt.Errorf("command %q exited with %d", cmd, code), Code: int(code)}
		}
		return nil
	case <-ctx.Done():
		x.kill()
		return ctx.Err()
	}
}

// readerOrNil keeps a nil *io.PipeReader from becoming a non-nil io.Reader.
func readerOrNil(r *io.PipeReader) io.Reader {
	if r == nil {
		return nil
	}
	return r
}

// execution is a started exec process.
type execution struct {
	proc   client.Process
	exited <-chan client.ExitStatus
	ctx    context.Context
}

// startExec starts cmd in container id with the container's process spec
// (user, env, cwd, capabilities), its stdio set up by opts.
func (m *Manager) startExec(ctx context.Context, id string, cmd []string, tty bool, opts ...cio.Opt) (*execution, error) {
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
	pspec.Args, pspec.Terminal = cmd, tty

	fifoDir := m.execFifoDir(c.ID)
	if err := os.MkdirAll(fifoDir, 0o700); err != nil {
		return nil, err
	}
	opts = append(opts, cio.WithFIFODir(fifoDir))
	execID := "exec-" + newID()[:16]
	proc, err := task.Exec(ctx, execID, &pspec, cio.NewCreator(opts...))
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	x := &execution{proc: proc, ctx: context.WithoutCancel(ctx)}
	if x.exited, err = proc.Wait(x.ctx); err != nil {
		x.delete()
		return nil, err
	}
	if err := proc.Start(ctx); err != nil {
		x.delete()
		if strings.Contains(err.Error(), "OCI runtime exec failed") {
			// runc could not run cmd in this container (not found there,
			// not executable, the container stopping, …): the state of
			// the container is at fault, not the runtime.
			return nil, fmt.Errorf("starting exec in container %s: %v: %w", c.ID, err, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("starting exec in container %s: %w", c.ID, err)
	}
	return x, nil
}

// kill ends the process and waits, boundedly, for it to exit.
func (x *execution) kill() {
	_ = x.proc.Kill(x.ctx, syscall.SIGKILL)
	select {
	case <-x.exited:
	case <-time.After(killTimeout):
	}
}

// delete removes the exec process from its task.
func (x *execution) delete() {
	dctx, cancel := context.WithTimeout(x.ctx, killTimeout)
	defer cancel()
	if _, err := x.proc.Delete(dctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Deleting exec process", "exec", x.proc.ID())
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

// outputBudget is how many bytes of output buffers sharing it may still keep.
type outputBudget struct {
	mu   sync.Mutex
	left int
}

// take claims up to n bytes of the budget and returns how many it got.
func (b *outputBudget) take(n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, b.left)
	b.left -= n
	return n
}

// boundedBuffer keeps what is written to it while its budget lasts and
// drops the rest.
type boundedBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	budget *outputBudget
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if n := b.budget.take(len(p)); n > 0 {
		b.mu.Lock()
		b.buf.Write(p[:n])
		b.mu.Unlock()
	}
	return len(p), nil
}

// Bytes returns what the buffer kept.
func (b *boundedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// ReopenLog makes the IO server reopen a running container's log file,
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
	err = m.io.call(ctx, func(cl containerio.Client) error { return cl.Reopen(ctx, c.ID) })
	if errors.Is(err, containerio.ErrNotRegistered) && containerio.Running(m.pidFile(c.ID)) {
		err = containerio.SignalReopen(m.pidFile(c.ID)) // an IO process of its own, from before the server
	}
	if errors.Is(err, containerio.ErrNotRegistered) || errors.Is(err, containerio.ErrNoIOProcess) {
		return fmt.Errorf("container %s: its output is served by no one: %w: %w", c.ID, err, errdefs.ErrFailedPrecondition)
	} else if err != nil {
		return fmt.Errorf("reopening the log of container %s: %w", c.ID, err)
	}
	for i := 0; i < 50; i++ { // the kubelet expects the file back when we answer
		if _, err := os.Stat(c.LogPath); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the IO server did not reopen %s, the log of container %s", c.LogPath, c.ID)
}
