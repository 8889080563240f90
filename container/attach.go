package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/containerio"
)

const (
	// attachDialTimeout bounds connecting to a container's attach socket.
	attachDialTimeout = 5 * time.Second
	// attachDrainQuiet is how long, after the container exited, attach
	// waits for more output before it ends: output still in flight arrives
	// within it, while a stream the shim holds open until the task is
	// deleted never ends by itself.
	attachDrainQuiet = 250 * time.Millisecond
	// stdinCloseTimeout bounds closing the container's stdin in the shim.
	stdinCloseTimeout = 10 * time.Second
)

// errLostClient means the attach client stopped taking output.
var errLostClient = errors.New("attach client went away")

// Attach connects the caller's streams to the stdio of a running container:
// its output from now on goes to stdout and stderr (a terminal's all to
// stdout), stdin (when the container has one) to its stdin, and resize
// events to its terminal. It returns when the container exits, when the
// client's stdin ends (a detach; with StdinOnce the container's stdin is
// closed first and attach goes on to its exit), or when the client goes away.
func (m *Manager) Attach(ctx context.Context, id string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	c, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	if c.State != StateRunning {
		return fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	if tty != c.Config.GetTty() {
		return fmt.Errorf("attach with tty=%t to container %s, whose tty is %t: %w", tty, c.ID, c.Config.GetTty(), errdefs.ErrInvalidArgument)
	}
	ctr, err := m.client.LoadContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return fmt.Errorf("loading task of container %s: %w", c.ID, err)
	}
	// What the session starts ends with it.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited, err := task.Wait(sctx)
	if err != nil {
		return fmt.Errorf("waiting on container %s: %w", c.ID, err)
	}
	// A container that just exited has no output to attach to: that is no
	// failure to attach.
	justExited := func() bool {
		select {
		case <-exited:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}
	conn, err := containerio.Dial(m.attachSocket(c.ID), attachDialTimeout)
	if err != nil {
		if justExited() {
			return nil
		}
		return fmt.Errorf("connecting to the output of container %s (started without attach support?): %w: %w", c.ID, err, errdefs.ErrFailedPrecondition)
	}
	defer conn.Close()
	// Output is relayed from the greeting on.
	_ = conn.SetReadDeadline(time.Now().Add(attachDialTimeout))
	if stream, _, err := containerio.ReadFrame(conn, make([]byte, containerio.FrameHeader)); err != nil || stream != containerio.StreamAttached {
		if justExited() {
			return nil
		}
		return fmt.Errorf("attaching to the output of container %s: no greeting from the IO server (%v)", c.ID, err)
	}
	_ = conn.SetReadDeadline(time.Time{})

	out := &outputCopy{conn: conn, stdout: stdout, stderr: stderr, tty: c.Config.GetTty()}
	outDone := make(chan error, 1)
	go func() { outDone <- out.run() }()

	var stdinDone chan error
	if stdin != nil && c.Config.GetStdin() {
		w, err := openStdin(m.stdioFifo(c.ID, "stdin"))
		if err != nil {
			return fmt.Errorf("opening the stdin of container %s: %w", c.ID, err)
		}
		if w != nil {
			defer w.Close() // ends a copy blocked on a full pipe
			stdinDone = make(chan error, 1)
			go func() {
				_, err := io.Copy(w, stdin)
				w.Close()
				if c.Config.GetStdinOnce() {
					// The first session's stdin is the container's whole stdin.
					cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), stdinCloseTimeout)
					defer ccancel()
					if cerr := task.CloseIO(cctx, client.WithStdinCloser); cerr != nil && !errdefs.IsNotFound(cerr) {
						klog.V(2).InfoS("Closing container stdin", "id", c.ID, "err", cerr)
					}
				}
				stdinDone <- err
			}()
		}
	}
	if tty && resize != nil {
		go func() {
			for {
				select {
				case size, ok := <-resize:
					if !ok {
						return
					}
					if err := task.Resize(sctx, uint32(size.Width), uint32(size.Height)); err != nil {
						klog.V(4).InfoS("Resizing container terminal", "id", c.ID, "err", err)
					}
				case <-sctx.Done():
					return
				}
			}
		}()
	}

	ended := func(why string, err error) error {
		klog.V(4).InfoS("Attach session ended", "id", c.ID, "why", why, "err", err)
		return err
	}
	for {
		select {
		case st := <-exited:
			if ctx.Err() != nil {
				return ended("the client went away", nil) // and the wait with it
			}
			// Take what output is still on its way, then end.
			out.drain()
			select {
			case <-outDone:
			case <-time.After(ioDrainTimeout):
			}
			if err := st.Error(); err != nil {
				return ended("the wait broke", fmt.Errorf("waiting on container %s: %w", c.ID, err))
			}
			return ended("the container exited", nil)
		case err := <-outDone:
			if errors.Is(err, errLostClient) {
				return ended("the client stopped taking output", nil)
			}
			if err != nil {
				return ended("output lost", fmt.Errorf("output of container %s: %w", c.ID, err))
			}
			// The output ended: the container is ending.
			select {
			case <-exited:
			case <-time.After(ioDrainTimeout):
			}
			return ended("the output ended", nil)
		case err := <-stdinDone:
			if err != nil || !c.Config.GetStdinOnce() {
				return ended("the client's stdin ended", err)
			}
			stdinDone = nil // stdin is closed; the output goes on to the exit
		case <-ctx.Done():
			return ended("the client went away", nil)
		}
	}
}

// outputCopy copies a container's output from its attach socket to an
// attach session.
type outputCopy struct {
	conn           net.Conn
	stdout, stderr io.Writer // nil: not wanted
	tty            bool      // a terminal has only stdout
	draining       atomic.Bool
}

// run copies until the container's output has ended (nil), the client
// stopped taking it (errLostClient) or, once draining, the output paused.
func (o *outputCopy) run() error {
	buf := make([]byte, containerio.MaxFrame)
	var stdoutEnded, stderrEnded bool
	for {
		if o.draining.Load() {
			_ = o.conn.SetReadDeadline(time.Now().Add(attachDrainQuiet))
		}
		stream, p, err := containerio.ReadFrame(o.conn, buf)
		if err != nil {
			if o.draining.Load() && (errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF)) {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("the IO server closed the connection (it fell behind?)")
			}
			return err
		}
		w := o.stdout
		if stream == containerio.StreamStderr {
			w = o.stderr
		}
		if len(p) == 0 {
			stdoutEnded = stdoutEnded || stream == containerio.StreamStdout
			stderrEnded = stderrEnded || stream == containerio.StreamStderr
			if stdoutEnded && (stderrEnded || o.tty) {
				return nil
			}
			continue
		}
		if w != nil {
			if _, err := w.Write(p); err != nil {
				return errLostClient
			}
		}
	}
}

// openStdin opens a container's stdin fifo for writing, without waiting: nil
// if nothing reads it any more (its stdin was closed, or it is ending). The
// file is in Go's poller, so closing it ends a blocked write.
func openStdin(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ENXIO) {
		return nil, nil
	}
	return f, err
}

// drain makes run end when no more output comes for a moment.
func (o *outputCopy) drain() {
	o.draining.Store(true)
	_ = o.conn.SetReadDeadline(time.Now().Add(attachDrainQuiet))
}
