package containerio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A container's output reaches attach clients through the IO server (see
// server.go), which serves a unix socket in the container's state
// directory. Every client gets the output
// from the moment it connects, as frames:
//
//	1 byte stream (1 stdout, 2 stderr) | 4 bytes big-endian length | payload
//
// A frame with no payload says that the stream ended. The first frame a
// client gets is an empty one on stream 0: from then on it gets all output.
// A client that falls behind is dropped (its connection closed) rather than
// slowing the log.

// Stream IDs in attach frames: 0 for the greeting, then the output streams'
// file descriptor numbers.
const (
	StreamAttached byte = 0
	StreamStdout   byte = 1
	StreamStderr   byte = 2
)

const (
	FrameHeader = 5
	// maxFrame bounds a frame's payload; longer writes are split.
	MaxFrame = 32 << 10
	// subscriberBacklog is how much output may wait for one attach client
	// before it is dropped.
	subscriberBacklog = 1 << 20
	// hubCloseTimeout bounds the wait for clients to take their last frames
	// when the output has ended.
	hubCloseTimeout = 2 * time.Second
)

// errFrameTooLong is a frame header announcing more than maxFrame bytes.
var errFrameTooLong = errors.New("attach frame too long")

// appendFrame appends a frame of p on stream to dst.
func appendFrame(dst []byte, stream byte, p []byte) []byte {
	dst = append(dst, stream, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(p)))
	return append(dst, p...)
}

// readFrame reads one frame from r into buf (at least maxFrame long) and
// returns its stream and payload, a slice of buf.
func ReadFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var h [FrameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxFrame || int(n) > len(buf) {
		return 0, nil, fmt.Errorf("%w: %d bytes", errFrameTooLong, n)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], buf[:n], nil
}

// hub broadcasts a container's output to attach clients. Writing to it never
// blocks on a client.
type hub struct {
	backlog int

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	ended  []byte // streams that ended, in order
	closed bool
}

func newHub() *hub {
	return &hub{backlog: subscriberBacklog, subs: map[*subscriber]struct{}{}}
}

// writer returns a Writer that broadcasts what is written to it on stream.
func (h *hub) writer(stream byte) io.Writer { return hubWriter{h, stream} }

type hubWriter struct {
	h      *hub
	stream byte
}

func (w hubWriter) Write(p []byte) (int, error) {
	if !w.h.attached() {
		return len(p), nil // no client: no frames to make
	}
	for rest := p; len(rest) > 0; {
		n := min(len(rest), MaxFrame)
		w.h.broadcast(appendFrame(make([]byte, 0, FrameHeader+n), w.stream, rest[:n]))
		rest = rest[n:]
	}
	return len(p), nil
}

// attached reports whether any client is attached.
func (h *hub) attached() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}

// end tells every client, present and future, that stream ended.
func (h *hub) end(stream byte) {
	h.mu.Lock()
	h.ended = append(h.ended, stream)
	h.mu.Unlock()
	h.broadcast(appendFrame(nil, stream, nil))
}

// resume takes back the end of stream, which output follows again (from
// another task of the container: see server.go); later clients get it.
func (h *hub) resume(stream byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = slices.DeleteFunc(h.ended, func(s byte) bool { return s == stream })
}

// broadcast queues one encoded frame for every client, dropping those that
// are too far behind.
func (h *hub) broadcast(frame []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if !s.enqueue(frame, h.backlog) {
			s.stop()
			delete(h.subs, s)
		}
	}
}

// add makes conn an attach client: it gets the greeting, the end of the
// streams that already ended, then all output from now on.
func (h *hub) add(conn net.Conn) {
	s := &subscriber{conn: conn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		conn.Close()
		return
	}
	s.enqueue(appendFrame(nil, StreamAttached, nil), h.backlog)
	for _, stream := range h.ended {
		s.enqueue(appendFrame(nil, stream, nil), h.backlog)
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go s.run()
	// A client says nothing; its connection ending is its leaving.
	go func() {
		_, _ = io.Copy(io.Discard, conn)
		s.stop()
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
	}()
}

// serve adds every connection l accepts until l is closed.
func (h *hub) serve(l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		h.add(conn)
	}
}

// close lets every client take its queued frames, boundedly, then
// disconnects them; later connections are refused.
func (h *hub) close(timeout time.Duration) {
	h.mu.Lock()
	h.closed = true
	subs := make([]*subscriber, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
		s.finish()
	}
	h.subs = map[*subscriber]struct{}{}
	h.mu.Unlock()
	deadline := time.After(timeout)
	for _, s := range subs {
		select {
		case <-s.done:
		case <-deadline:
			s.stop()
		}
	}
}

// subscriber is one attach client: a queue of frames and the goroutine that
// writes them to its connection.
type subscriber struct {
	conn net.Conn
	wake chan struct{}
	done chan struct{} // closed by stop

	mu        sync.Mutex
	queue     [][]byte
	queued    int
	finishing bool
	stopped   bool
}

// enqueue queues a frame; false if that would exceed backlog.
func (s *subscriber) enqueue(frame []byte, backlog int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	if s.queued+len(frame) > backlog {
		return false
	}
	s.queue = append(s.queue, frame)
	s.queued += len(frame)
	s.signal()
	return true
}

func (s *subscriber) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// finish makes the subscriber stop once its queue is written.
func (s *subscriber) finish() {
	s.mu.Lock()
	s.finishing = true
	s.signal()
	s.mu.Unlock()
}

// stop disconnects the client at once.
func (s *subscriber) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	close(s.done)
	s.conn.Close()
}

func (s *subscriber) run() {
	defer s.stop()
	for {
		s.mu.Lock()
		q, finishing := s.queue, s.finishing
		s.queue, s.queued = nil, 0
		s.mu.Unlock()
		for _, f := range q {
			if _, err := s.conn.Write(f); err != nil {
				return
			}
		}
		if len(q) > 0 {
			continue
		}
		if finishing {
			return
		}
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}

// maxSocketPath is the longest path a unix socket address holds.
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// viaShortPath calls fn with a name of path short enough for a unix socket
// address: path itself, or, when it is too long, the path through a
// descriptor of its directory in /proc/self/fd. The state directory plus a
// 64-character container ID easily exceeds the limit.
func viaShortPath(path string, fn func(string) error) error {
	if len(path) <= maxSocketPath {
		return fn(path)
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: filepath.Dir(path), Err: err}
	}
	defer unix.Close(fd)
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path)))
}

// listenUnix listens on a unix socket at path, replacing a stale one. The
// caller removes the socket file.
func listenUnix(path string) (*net.UnixListener, error) {
	_ = os.Remove(path)
	var l *net.UnixListener
	err := viaShortPath(path, func(p string) error {
		var err error
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	// The name it was bound by may have been a descriptor's path.
	l.SetUnlinkOnClose(false)
	return l, nil
}

// dialUnix connects to the unix socket at path.
func Dial(path string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := viaShortPath(path, func(p string) error {
		var err error
		conn, err = net.DialTimeout("unix", p, timeout)
		return err
	})
	return conn, err
}
