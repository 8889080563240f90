package containerio

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logDriverEnv makes the test binary run as a log driver (see
// TestLogDriverFlushesOnSIGTERM).
const logDriverEnv = "PEAPOD_TEST_LOG_DRIVER"

func init() {
	if os.Getenv(logDriverEnv) != "" {
		if err := RunLogDriver(os.Args[1:]); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// The shim ends a log driver with SIGTERM when the task is deleted. The
// container's last words, text with no newline after it, must reach the log
// (the kubelet's FallbackToLogsOnError termination message comes from
// there), and the driver must exit on its own, even when something still
// holds the output pipes open.
func TestLogDriverFlushesOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outW.Close()
	defer errW.Close()
	cmd := exec.Command(os.Args[0], LogDriverFlag, "1", OptLogPath, logPath)
	cmd.Env = append(os.Environ(), logDriverEnv+"=1")
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outR.Close()
	errR.Close()
	readyW.Close()
	if _, err := readyR.Read(make([]byte, 1)); err != nil {
		t.Fatalf("driver not ready: %v", err)
	}
	if _, err := outW.WriteString("a line\nlast words"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the driver read it
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("driver exit after SIGTERM: %v", err)
		}
	case <-time.After(termGrace + 5*time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("driver did not exit after SIGTERM")
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if f := strings.SplitN(line, " ", 2); len(f) == 2 {
			got = append(got, f[1])
		}
	}
	want := []string{"stdout F a line", "stdout P last words"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("log entries %q, want %q", got, want)
	}
}

// copyLines tags entries as containerd's CRI does: F for a line ended by a
// newline, P for a piece of a long line and for text ending the stream
// without one (the kubelet then adds no newline to a termination message
// read from the log).
func TestCopyLines(t *testing.T) {
	long := strings.Repeat("x", maxLogLine)
	cases := []struct {
		name, in string
		want     []string // "TAG content"
	}{
		{"lines", "a\nb\n", []string{"F a", "F b"}},
		{"last line without a newline", "a\nDONE", []string{"F a", "P DONE"}},
		{"only text without a newline", "DONE", []string{"P DONE"}},
		{"empty line", "\n", []string{"F "}},
		{"CRLF", "a\r\nb\r\n", []string{"F a", "F b"}},
		{"nothing", "", nil},
		{"long line", long + "yz\n", []string{"P " + long, "F yz"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ctr.log")
			l, err := openLog(path)
			if err != nil {
				t.Fatal(err)
			}
			l.copyLines(strings.NewReader(tc.in), "stdout")
			l.close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
				if line == "" {
					continue
				}
				// <time> <stream> <tag> <content>
				f := strings.SplitN(line, " ", 4)
				if len(f) != 4 || f[1] != "stdout" {
					t.Fatalf("malformed entry %q", line)
				}
				got = append(got, f[2]+" "+f[3])
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("entries %q, want %q", got, tc.want)
			}
		})
	}
}
