package containerio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// logDriverFlag marks the shim's invocation of peapod as a log driver. The
// shim passes the log URI's query as "key value" argument pairs in no fixed
// order, so the driver is recognised by this key anywhere in the arguments.
const LogDriverFlag = "peapod-log-driver"

// The IO process's options, given as "key value" argument pairs.
const (
	OptLogPath = "path"    // the CRI log file; none if empty
	OptSocket  = "socket"  // the attach socket; none if empty
	OptPidFile = "pidfile" // where it records its PID, for ReopenContainerLog's SIGUSR1
	OptStdout  = "stdout"  // the fifo relay's stdout fifo
	OptStderr  = "stderr"  // the fifo relay's stderr fifo
)

// maxLogLine is the longest log line written as one entry; longer lines are
// split into partial ("P") entries, as the CRI log format allows.
const maxLogLine = 16 << 10

// IsLogDriver reports whether peapod was started by a shim as a log driver.
func IsLogDriver(args []string) bool { return slices.Contains(args, LogDriverFlag) }

// RunLogDriver is the log driver: the shim hands it the container's stdout
// and stderr as file descriptors 3 and 4 and a readiness pipe as 5. It
// writes every line in the CRI log format
//
//	<RFC3339Nano time> <stdout|stderr> <F|P> <line>
//
// to the log path (if one is given), reopens the file on SIGUSR1 (after the
// kubelet rotated it), serves the output to attach clients on the socket
// (see relay.go), and exits when the container's output ends. It runs under
// the shim, not peapod, so logs keep flowing and attach keeps working while
// peapod restarts.
func RunLogDriver(args []string) error {
	opts := parseOptions(args)
	// Non-blocking descriptors make pollable files, whose reads a deadline
	// can end (see endOnTerm).
	for fd := 3; fd <= 4; fd++ {
		_ = syscall.SetNonblock(fd, true)
	}
	return relayOutput(opts, []outputStream{
		{os.NewFile(3, "stdout"), StreamStdout},
		{os.NewFile(4, "stderr"), StreamStderr},
	}, func() {
		ready := os.NewFile(5, "ready")
		_, _ = ready.Write([]byte{1})
		_ = ready.Close()
	})
}

// parseOptions reads "key value" argument pairs.
func parseOptions(args []string) map[string]string {
	opts := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		opts[args[i]] = args[i+1]
	}
	return opts
}

// outputStream is one output stream of a container, as its IO process reads it.
type outputStream struct {
	r  io.Reader
	id byte // StreamStdout or StreamStderr
}

// relayOutput is the body of a container's IO process (the shim-run log
// driver or the fifo relay): it copies each stream to the CRI log at
// opts[OptLogPath] and to the attach clients of the socket at
// opts[OptSocket], records its PID in opts[OptPidFile] for ReopenLog's
// SIGUSR1, calls ready once it is set up, and returns when every
// stream has ended.
func relayOutput(opts map[string]string, streams []outputStream, ready func()) error {
	path, pidfile, socket := opts[OptLogPath], opts[OptPidFile], opts[OptSocket]
	if path == "" && socket == "" {
		return errors.New("container IO: neither a log path nor an attach socket")
	}
	var w *criLog
	if path != "" {
		var err error
		if w, err = openLog(path); err != nil {
			return err
		}
		defer w.close()
	}
	if pidfile != "" {
		if err := os.MkdirAll(filepath.Dir(pidfile), 0o700); err == nil {
			_ = os.WriteFile(pidfile, []byte(strconv.Itoa(os.Getpid())), 0o600)
			defer os.Remove(pidfile)
		}
	}
	if w != nil {
		reopen := make(chan os.Signal, 1)
		signal.Notify(reopen, syscall.SIGUSR1)
		go func() {
			for range reopen {
				if err := w.reopen(); err != nil {
					fmt.Fprintf(os.Stderr, "peapod container IO: reopening %s: %v\n", path, err)
				}
			}
		}()
	}
	endOnTerm(streams, termGrace)
	h := newHub()
	if socket != "" {
		// Without its socket the container only loses attach: its output
		// must still be read, or the container would block on it.
		if l, err := listenUnix(socket); err != nil {
			fmt.Fprintf(os.Stderr, "peapod container IO: %v\n", err)
		} else {
			go h.serve(l)
			defer os.Remove(socket)
			defer l.Close()
		}
	}

	ready()

	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() {
			out := h.writer(s.id)
			if w != nil {
				w.copyLines(io.TeeReader(s.r, out), streamName(s.id))
			} else {
				_, _ = io.Copy(out, s.r)
			}
			h.end(s.id)
		})
	}
	wg.Wait()
	h.close(hubCloseTimeout)
	return nil
}

// termGrace is how long the IO process goes on reading after SIGTERM.
const termGrace = 2 * time.Second

// endOnTerm makes SIGTERM end the streams, not the process. The shim sends
// it when the task is deleted, just after closing its ends of the output
// pipes, and until then the container's last words, a line with no newline
// after it, wait in the reader's buffer for the end of the stream: killed
// by the signal, the IO process would lose them, and with them the
// termination message the kubelet reads from the log. So on SIGTERM the
// streams are read on for termGrace, and then ended as if at EOF, which
// writes what is buffered; the shim waits 12s for the process to exit.
// Streams that take no deadline keep SIGTERM's default: the process ends.
func endOnTerm(streams []outputStream, grace time.Duration) {
	type deadliner interface{ SetReadDeadline(time.Time) error }
	var ds []deadliner
	for _, s := range streams {
		d, ok := s.r.(deadliner)
		if !ok {
			return
		}
		ds = append(ds, d)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		deadline := time.Now().Add(grace)
		for _, d := range ds {
			_ = d.SetReadDeadline(deadline)
		}
	}()
}

func streamName(id byte) string {
	if id == StreamStderr {
		return "stderr"
	}
	return "stdout"
}

// criLog writes CRI log entries to a file that can be reopened.
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
	}
}

// copyLines reads one stream to its end, writing an entry per line: "F"
// for a line ended by a newline (with "\r\n" as one), "P" for a piece of a
// line longer than maxLogLine and for text the stream ends with no newline
// after, as containerd's CRI writes them. The kubelet reads a container's
// last words for its termination message (FallbackToLogsOnError) from
// them, and a "P" adds no newline that the container did not write.
func (l *criLog) copyLines(r io.Reader, stream string) {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			if n := len(line); n > 0 && line[n-1] == '\r' {
				// A "\r\n" straddling the buffer stays whole for the next entry.
				_ = br.UnreadByte()
				line = line[:n-1]
			}
			l.write(stream, "P", line)
			continue
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			l.write(stream, "F", line)
			continue
		}
		if len(line) > 0 { // the end of the stream, with no newline
			l.write(stream, "P", line)
		}
		return
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
	_, _ = l.f.Write(entry)
}
