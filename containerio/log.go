package containerio

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// maxLogLine is the longest line written as one entry, its newline
// included; longer lines are split into partial ("P") entries, as the CRI
// log format allows and as containerd's CRI splits them.
const maxLogLine = 16 << 10

// criLog writes CRI log entries
//
//	<RFC3339Nano time> <stdout|stderr> <F|P> <line>
//
// to a file that can be reopened (after the kubelet rotated it).
type criLog struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLog(path string) (*criLog, error) {
	l := &criLog{path: path}
	return l, l.reopen()
}

func (l *criLog) reopen() error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (l *criLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

func (l *criLog) write(stream, tag string, line []byte) {
	entry := make([]byte, 0, len(line)+64)
	entry = time.Now().UTC().AppendFormat(entry, time.RFC3339Nano)
	entry = append(entry, ' ')
	entry = append(entry, stream...)
	entry = append(entry, ' ')
	entry = append(entry, tag...)
	entry = append(entry, ' ')
	entry = append(entry, line...)
	entry = append(entry, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_, _ = l.f.Write(entry)
	}
}

// lineWriter cuts one output stream into log entries: "F" for a line ended
// by a newline (with "\r\n" as one), "P" for a piece of a line longer than
// maxLogLine and for text the stream ends with no newline after, as
// containerd's CRI writes them. The kubelet reads a container's last words
// for its termination message (FallbackToLogsOnError) from them, and a "P"
// adds no newline that the container did not write.
//
// It holds only the unfinished line between writes, so an idle stream
// costs no buffer.
type lineWriter struct {
	log     *criLog
	stream  string
	pending []byte // the start of a line whose newline has not come
}

// Write logs the complete lines of p and keeps the rest for later.
func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.pending = append(w.pending, p...)
			for len(w.pending) >= maxLogLine {
				w.pending = w.partial(w.pending)
			}
			break
		}
		line := p[:i+1]
		if len(w.pending) > 0 {
			line = append(w.pending, line...)
		}
		for len(line) > maxLogLine {
			line = w.partial(line)
		}
		line = line[:len(line)-1]
		if k := len(line); k > 0 && line[k-1] == '\r' {
			line = line[:k-1]
		}
		w.log.write(w.stream, "F", line)
		w.pending = w.pending[:0]
		p = p[i+1:]
	}
	if cap(w.pending) > 4<<10 && len(w.pending) == 0 {
		w.pending = nil // a long line is done: let its buffer go
	}
	return n, nil
}

// partial logs the first maxLogLine bytes of b, which hold no newline, as
// a "P" entry and returns the rest. A "\r" that ends the piece stays for
// the next one, whole with the "\n" that may follow it.
func (w *lineWriter) partial(b []byte) []byte {
	k := maxLogLine
	if b[k-1] == '\r' {
		k--
	}
	w.log.write(w.stream, "P", b[:k])
	return b[k:]
}

// end logs what the stream ended with, if no newline came after it.
func (w *lineWriter) end() {
	if len(w.pending) > 0 {
		w.log.write(w.stream, "P", w.pending)
	}
	w.pending = nil
}

// copyLines logs r to its end.
func (l *criLog) copyLines(r io.Reader, stream string) {
	w := &lineWriter{log: l, stream: stream}
	_, _ = io.Copy(w, r)
	w.end()
}
