package containerio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	cases := []struct {
		name    string
		stream  byte
		payload []byte
	}{
		{"greeting", StreamAttached, nil},
		{"stdout line", StreamStdout, []byte("hello\n")},
		{"stderr partial line", StreamStderr, []byte("no newline")},
		{"end of stdout", StreamStdout, nil},
		{"largest", StreamStdout, bytes.Repeat([]byte{'x'}, MaxFrame)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			frame := appendFrame(nil, tc.stream, tc.payload)
			if len(frame) != FrameHeader+len(tc.payload) {
				t.Fatalf("frame is %d bytes, want %d", len(frame), FrameHeader+len(tc.payload))
			}
			stream, p, err := ReadFrame(bytes.NewReader(frame), make([]byte, MaxFrame))
			if err != nil {
				t.Fatal(err)
			}
			if stream != tc.stream || !bytes.Equal(p, tc.payload) {
				t.Errorf("read stream %d %q, want %d %q", stream, p, tc.stream, tc.payload)
			}
		})
	}
}

func TestReadFrameErrors(t *testing.T) {
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"nothing", nil, io.EOF},
		{"short header", []byte{1, 0, 0}, io.ErrUnexpectedEOF},
		{"short payload", append(appendFrame(nil, StreamStdout, []byte("hello"))[:FrameHeader], 'h'), io.ErrUnexpectedEOF},
		{"too long", []byte{1, 0, 1, 0, 1}, errFrameTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadFrame(bytes.NewReader(tc.input), make([]byte, MaxFrame))
			if !errors.Is(err, tc.want) {
				t.Errorf("readFrame = %v, want %v", err, tc.want)
			}
		})
	}
}

// frameReader reads frames from an attach client's side of a connection.
type frameReader struct {
	t    *testing.T
	conn net.Conn
	buf  []byte
}

func newFrameReader(t *testing.T, conn net.Conn) *frameReader {
	return &frameReader{t: t, conn: conn, buf: make([]byte, MaxFrame)}
}

func (r *frameReader) next() (byte, string, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	stream, p, err := ReadFrame(r.conn, r.buf)
	return stream, string(p), err
}

// expect reads frames and fails unless they are want, as "stream:payload".
func (r *frameReader) expect(want ...string) {
	r.t.Helper()
	for i, w := range want {
		stream, p, err := r.next()
		if err != nil {
			r.t.Fatalf("frame %d: %v, want %q", i, err, w)
		}
		if got := string('0'+stream) + ":" + p; got != w {
			r.t.Fatalf("frame %d is %q, want %q", i, got, w)
		}
	}
}

// attachPipe adds one end of a pipe to h and returns the client's end.
func attachPipe(t *testing.T, h *hub) net.Conn {
	server, client := net.Pipe()
	t.Cleanup(func() { client.Close() })
	h.add(server)
	return client
}

func TestHubBroadcast(t *testing.T) {
	h := newHub()
	a, b := newFrameReader(t, attachPipe(t, h)), newFrameReader(t, attachPipe(t, h))
	stdout, stderr := h.writer(StreamStdout), h.writer(StreamStderr)
	io.WriteString(stdout, "one\n")
	io.WriteString(stderr, "oops")
	io.WriteString(stdout, "two\n")
	h.end(StreamStdout)
	h.end(StreamStderr)
	go h.close(time.Second)
	for _, r := range []*frameReader{a, b} {
		r.expect("0:", "1:one\n", "2:oops", "1:two\n", "1:", "2:")
		if _, _, err := r.next(); !errors.Is(err, io.EOF) {
			t.Errorf("after the output ended: %v, want EOF", err)
		}
	}
}

func TestHubSplitsLongWrites(t *testing.T) {
	h := newHub()
	r := newFrameReader(t, attachPipe(t, h))
	long := bytes.Repeat([]byte("0123456789"), MaxFrame/5+1) // 2 frames and a bit
	go func() { h.writer(StreamStdout).Write(long) }()
	r.expect("0:")
	var got []byte
	for len(got) < len(long) {
		stream, p, err := r.next()
		if err != nil || stream != StreamStdout || len(p) > MaxFrame {
			t.Fatalf("frame: stream %d, %d bytes, %v", stream, len(p), err)
		}
		got = append(got, p...)
	}
	if !bytes.Equal(got, long) {
		t.Errorf("the frames do not add up to what was written")
	}
}

func TestHubLateClientLearnsWhatEnded(t *testing.T) {
	h := newHub()
	io.WriteString(h.writer(StreamStderr), "before anyone came")
	h.end(StreamStderr)
	r := newFrameReader(t, attachPipe(t, h))
	io.WriteString(h.writer(StreamStdout), "after")
	r.expect("0:", "2:", "1:after")
}

func TestHubDropsSlowClient(t *testing.T) {
	h := newHub()
	h.backlog = 4 << 10
	stalled := attachPipe(t, h) // never read
	r := newFrameReader(t, attachPipe(t, h))
	r.expect("0:")
	// The stalled client's greeting is in its writer; read nothing more.
	chunk := bytes.Repeat([]byte{'x'}, 1000)
	w := h.writer(StreamStdout)
	begin := time.Now()
	for i := range 20 {
		w.Write(chunk)
		// The live client keeps up; its backlog never grows.
		if stream, p, err := r.next(); err != nil || stream != StreamStdout || len(p) != len(chunk) {
			t.Fatalf("write %d: live client got stream %d, %d bytes, %v", i, stream, len(p), err)
		}
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("writing took %s with a stalled client", took)
	}
	h.mu.Lock()
	n := len(h.subs)
	h.mu.Unlock()
	if n != 1 {
		t.Errorf("%d clients after the stalled one fell behind, want 1", n)
	}
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, stalled); err != nil {
		t.Errorf("the stalled client's connection: %v, want it closed", err)
	}
}

func TestHubForgetsClientsThatLeave(t *testing.T) {
	h := newHub()
	c := attachPipe(t, h)
	newFrameReader(t, c).expect("0:")
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		n := len(h.subs)
		h.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d clients after the only one left", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// longDir returns a directory whose socket paths exceed a unix address.
func longDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestUnixSocketPaths(t *testing.T) {
	cases := []struct {
		name string
		dir  string
	}{
		{"short", t.TempDir()},
		{"longer than a unix address", longDir(t)},
	}
	for _, tc := range cases {
		path := filepath.Join(tc.dir, "attach.sock")
		t.Run(tc.name, func(t *testing.T) {
			l, err := listenUnix(path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if fi, err := os.Stat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
				t.Fatalf("socket at %s: %v", path, err)
			}
			go func() {
				if c, err := l.Accept(); err == nil {
					c.Write([]byte("hi"))
					c.Close()
				}
			}()
			c, err := Dial(path, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if b, err := io.ReadAll(c); err != nil || string(b) != "hi" {
				t.Errorf("read %q, %v", b, err)
			}
			l.Close()
			if _, err := os.Stat(path); err != nil {
				t.Errorf("closing the listener removed the socket (%v): the IO process removes it by its full path", err)
			}
		})
	}
}
