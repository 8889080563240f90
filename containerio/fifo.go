package containerio

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A container's output fifo is read through Go's poller, so that the
// hundreds of streams of a busy node wait on one epoll set rather than each
// on a thread blocked in read(2), and without a buffer while they wait: a
// read takes a buffer from readBuffers only once the fifo is readable.
//
// The fifo is opened for reading without waiting for a writer (O_NONBLOCK).
// Until a writer comes, read(2) returns 0 as it would at the end of the
// stream; the two are told apart by POLLHUP, which Linux reports on a
// fifo's reader only after a writer that came since the reader's open has
// gone. The shim opens its end when the task is created, and closes it once
// the container's output ended.

// readBuffers holds the buffers fifo reads take while data is there.
var readBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// fifoReader reads one output fifo.
type fifoReader struct {
	f  *os.File
	rc syscall.RawConn
}

// openFifo opens the fifo at path for reading, without waiting for a writer.
func openFifo(path string) (*fifoReader, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("not a fifo")}
	}
	f := os.NewFile(uintptr(fd), path) // non-blocking: registered with the poller
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fifoReader{f: f, rc: rc}, nil
}

// next waits for output and hands it to fn, in a buffer that is only good
// during the call. It returns io.EOF once every writer that came has gone,
// and os.ErrClosed once the reader is closed.
func (r *fifoReader) next(fn func([]byte)) error {
	var (
		buf  *[]byte
		n    int
		rerr error
	)
	err := r.rc.Read(func(fd uintptr) bool {
		buf = readBuffers.Get().(*[]byte)
		n, rerr = unix.Read(int(fd), *buf)
		if n > 0 || (rerr != nil && rerr != unix.EAGAIN && rerr != unix.EINTR) || (rerr == nil && hungUp(fd)) {
			return true
		}
		readBuffers.Put(buf) // nothing yet: wait for the poller
		buf = nil
		return false
	})
	if buf != nil {
		defer readBuffers.Put(buf)
	}
	switch {
	case err != nil:
		return err
	case rerr != nil:
		return rerr
	case n == 0:
		return io.EOF
	}
	fn((*buf)[:n])
	return nil
}

// hungUp reports whether the fifo's writers have come and gone.
func hungUp(fd uintptr) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(p, 0)
	return err == nil && n == 1 && p[0].Revents&unix.POLLHUP != 0
}

func (r *fifoReader) Close() error { return r.f.Close() }
