package container

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
const logDriverFlag = "peapod-log-driver"

// maxLogLine is the longest log line written as one entry; longer lines are
// split into partial ("P") entries, as the CRI log format allows.
const maxLogLine = 16 << 10

// IsLogDriver reports whether peapod was started by a shim as a log driver.
func IsLogDriver(args []string) bool { return slices.Contains(args, logDriverFlag) }

// RunLogDriver is the log driver: the shim hands it the container's stdout
// and stderr as file descriptors 3 and 4 and a readiness pipe as 5. It
// writes every line in the CRI log format
//
//	<RFC3339Nano time> <stdout|stderr> <F|P> <line>
//
// to the log path, reopens the file on SIGUSR1 (after the kubelet rotated
// it), and exits when the container's output ends. It runs under the shim,
// not peapod, so logs keep flowing while peapod restarts.
func RunLogDriver(args []string) error {
	opts := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		opts[args[i]] = args[i+1]
	}
	path, pidfile := opts["path"], opts["pidfile"]
	if path == "" {
		return errors.New("log driver: no path")
	}
	w, err := openLog(path)
	if err != nil {
		return err
	}
	defer w.close()
	if pidfile != "" {
		if err := os.MkdirAll(filepath.Dir(pidfile), 0o700); err == nil {
			_ = os.WriteFile(pidfile, []byte(strconv.Itoa(os.Getpid())), 0o600)
			defer os.Remove(pidfile)
		}
	}
	reopen := make(chan os.Signal, 1)
	signal.Notify(reopen, syscall.SIGUSR1)
	go func() {
		for range reopen {
			if err := w.reopen(); err != nil {
				fmt.Fprintf(os.Stderr, "peapod log driver: reopening %s: %v\n", path, err)
			}
		}
	}()

	ready := os.NewFile(5, "ready")
	_, _ = ready.Write([]byte{1})
	_ = ready.Close()

	var wg sync.WaitGroup
	for fd, stream := range map[uintptr]string{3: "stdout", 4: "stderr"} {
		f := os.NewFile(fd, stream)
		wg.Go(func() { w.copyLines(f, stream) })
	}
	wg.Wait()
	return nil
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

// copyLines reads one stream to its end, writing an entry per line.
func (l *criLog) copyLines(r io.Reader, stream string) {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 || (err == nil && !isPrefix) {
			tag := "F"
			if isPrefix {
				tag = "P"
			}
			l.write(stream, tag, line)
		}
		if err != nil {
			return
		}
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
