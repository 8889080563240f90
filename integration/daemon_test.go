//go:build integration

// Package integration runs the real peapod binary against a real containerd
// and talks to it over its socket with the CRI client the kubelet uses.
//
//	PEAPOD_TEST_CONTAINERD=/run/containerd/containerd.sock go test -tags integration ./integration/...
//
// The tests need root (for containerd's socket) and fail, rather than skip,
// when PEAPOD_TEST_CONTAINERD is not set.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const containerdEnv = "PEAPOD_TEST_CONTAINERD"

var (
	// peapodBin is the binary under test, built once by TestMain.
	peapodBin string
	// containerdSock is the containerd peapod is pointed at.
	containerdSock string
)

// cniBinDir holds the real CNI plugins; the tests only need them found.
const cniBinDir = "/usr/lib/cni"

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	containerdSock = os.Getenv(containerdEnv)
	if containerdSock == "" {
		fmt.Fprintf(os.Stderr, "FAIL: %s is not set: set it to the socket of a running containerd (the Makefile's integration target does)\n", containerdEnv)
		return 1
	}
	if fi, err := os.Stat(containerdSock); err != nil || fi.Mode().Type() != os.ModeSocket {
		fmt.Fprintf(os.Stderr, "FAIL: %s=%s is not a socket (%v): is containerd running?\n", containerdEnv, containerdSock, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "peapod-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// peapod finds peapod-io beside itself.
	peapodBin = filepath.Join(dir, "peapod")
	build := exec.Command("go", "build", "-o", dir, "github.com/peapod-cri/peapod/cmd/peapod", "github.com/peapod-cri/peapod/cmd/peapod-io")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // peapod-io goes into the built-in pause image: static
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: building peapod: %v\n", err)
		return 1
	}
	return m.Run()
}

// daemon is one peapod process started by a test.
type daemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	socket  string
	confDir string // CNI config dir, initially empty
	stderr  *syncBuffer
	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited is closed
	// created, when set, is told the ID of each pod and container made
	// through a connection from dial.
	created func(id string)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tempDir returns a short temp dir (a unix socket path has at most 107
// bytes, which t.TempDir's long names can exceed), removed after the test.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// options are what a test changes about a peapod's start.
type options struct {
	socket     string // default: a fresh temp path
	containerd string // default: containerdSock
	configFile string // default: an empty config file
	extraArgs  []string
	env        []string // KEY=value added to peapod's environment
}

// start runs peapod with its own temp root, state, CNI config dir and socket,
// and an empty config file (so /etc/peapod/config.toml plays no part). The
// test's cleanup kills it if it still runs.
func start(t *testing.T, o options) *daemon {
	t.Helper()
	dir := tempDir(t)
	if o.socket == "" {
		o.socket = filepath.Join(dir, "peapod.sock")
	}
	if o.containerd == "" {
		o.containerd = containerdSock
	}
	if o.configFile == "" {
		o.configFile = filepath.Join(dir, "config.toml")
		if err := os.WriteFile(o.configFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := &daemon{t: t, socket: o.socket, confDir: filepath.Join(dir, "net.d"), stderr: &syncBuffer{}, exited: make(chan struct{})}
	if err := os.Mkdir(d.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--config", o.configFile,
		"--listen", o.socket,
		"--containerd-address", o.containerd,
		"--containerd-namespace", "peapod-integration",
		"--root", filepath.Join(dir, "root"),
		"--state", filepath.Join(dir, "state"),
		"--cni-conf-dir", d.confDir,
		"--cni-bin-dir", cniBinDir,
		"--v", "4",
	}, o.extraArgs...)
	d.cmd = exec.Command(peapodBin, args...)
	d.cmd.Stderr = d.stderr
	if len(o.env) > 0 {
		d.cmd.Env = append(os.Environ(), o.env...)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting peapod: %v", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() { stopIOServer(t, filepath.Join(dir, "state")) })
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("peapod %s stderr:\n%s", o.socket, d.stderr.String())
		}
		keepLog(t, d.stderr.String())
	})
	return d
}

// logDirEnv names a directory where every peapod a test starts leaves its
// log, passed or failed (chaos-loop.sh sets it): how long each call took
// is in it.
const logDirEnv = "PEAPOD_TEST_LOG_DIR"

// keepLog appends one peapod's log to the test's file in $PEAPOD_TEST_LOG_DIR.
func keepLog(t *testing.T, log string) {
	dir := os.Getenv(logDirEnv)
	if dir == "" {
		return
	}
	name := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+".log")
	f, err := os.OpenFile(name, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("keeping peapod's log: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(log); err != nil {
		t.Logf("keeping peapod's log: %v", err)
	}
}

// ioServerPid is the PID of the IO server peapod started for state
// directory state; 0 if none runs.
func ioServerPid(t *testing.T, state string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(state, "io", "server.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("\x00"+filepath.Join(state, "io")+"\x00")) {
		return 0 // it ended, and its PID may be another process's
	}
	return pid
}

// stopIOServer stops the IO server of state, which outlives peapod: when a
// test ends, it is the test's to stop.
func stopIOServer(t *testing.T, state string) {
	pid := ioServerPid(t, state)
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 100 && ioServerPid(t, state) == pid; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if ioServerPid(t, state) == pid {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// startServing starts peapod and waits until it answers Version.
func startServing(t *testing.T, o options) (*daemon, runtime.RuntimeServiceClient) {
	t.Helper()
	d := start(t, o)
	return d, d.waitServing()
}

// waitServing waits until peapod answers on its socket and returns a runtime
// client, failing if peapod exits or takes more than 10 s.
func (d *daemon) waitServing() runtime.RuntimeServiceClient {
	d.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A fresh connection each time: a failed one waits out gRPC's
		// reconnect backoff (1 s) before trying again.
		err := d.answers()
		if err == nil {
			return runtime.NewRuntimeServiceClient(d.dial())
		}
		select {
		case <-d.exited:
			d.t.Fatalf("peapod exited before serving: %v\n%s", d.waitErr, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("peapod does not answer on %s: %v\n%s", d.socket, err, d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answers makes one Version call on a connection of its own.
func (d *daemon) answers() error {
	conn, err := grpc.NewClient("unix://"+d.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = runtime.NewRuntimeServiceClient(conn).Version(ctx, &runtime.VersionRequest{})
	return err
}

// dial opens a CRI client connection to the daemon's socket, as the kubelet does.
func (d *daemon) dial() *grpc.ClientConn {
	d.t.Helper()
	conn, err := grpc.NewClient("unix://"+d.socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(d.noteCreated))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { conn.Close() })
	return conn
}

// noteCreated tells d.created the ID of each pod and container a call made.
func (d *daemon) noteCreated(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil || d.created == nil {
		return err
	}
	switch r := reply.(type) {
	case *runtime.RunPodSandboxResponse:
		d.created(r.PodSandboxId)
	case *runtime.CreateContainerResponse:
		d.created(r.ContainerId)
	}
	return nil
}

// wait waits up to timeout for peapod to exit and returns its exit code.
func (d *daemon) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.exited:
	case <-time.After(timeout):
		d.t.Fatalf("peapod still running after %s\n%s", timeout, d.stderr.String())
	}
	var exit *exec.ExitError
	if d.waitErr != nil && !errors.As(d.waitErr, &exit) {
		d.t.Fatalf("waiting for peapod: %v", d.waitErr)
	}
	return d.cmd.ProcessState.ExitCode()
}

func (d *daemon) signal(sig os.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signalling peapod: %v", err)
	}
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func condition(t *testing.T, resp *runtime.StatusResponse, typ string) *runtime.RuntimeCondition {
	t.Helper()
	for _, c := range resp.GetStatus().GetConditions() {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("Status has no %s condition: %v", typ, resp)
	return nil
}

func TestVersionAndStatus(t *testing.T) {
	t.Parallel()
	d, rt := startServing(t, options{})
	ctx := callCtx(t)

	v, err := rt.Version(ctx, &runtime.VersionRequest{Version: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "peapod" || v.RuntimeVersion == "" || v.RuntimeApiVersion != "v1" {
		t.Errorf("Version = %+v", v)
	}

	st, err := rt.Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(t, st, runtime.RuntimeReady); !c.Status {
		t.Errorf("RuntimeReady = %v with containerd at %s", c, containerdSock)
	}
	if c := condition(t, st, runtime.NetworkReady); c.Status || c.Reason != "NetworkPluginNotReady" || !strings.Contains(c.Message, d.confDir) {
		t.Errorf("NetworkReady = %v with an empty %s", c, d.confDir)
	}
	var ctrd map[string]string
	if err := json.Unmarshal([]byte(st.Info["containerd"]), &ctrd); err != nil || ctrd["version"] == "" || ctrd["address"] != containerdSock {
		t.Errorf(`Info["containerd"] = %q (%v)`, st.Info["containerd"], err)
	}

	// A usable config appears: the next Status sees it, without a restart.
	conflist := `{"cniVersion":"1.0.0","name":"t","plugins":[` +
		`{"type":"bridge","bridge":"t0","ipam":{"type":"host-local","subnet":"10.250.0.0/24"}},` +
		`{"type":"portmap","capabilities":{"portMappings":true}}]}`
	tmp := filepath.Join(filepath.Dir(d.confDir), "10-t.conflist")
	if err := os.WriteFile(tmp, []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.confDir, "10-t.conflist")); err != nil {
		t.Fatal(err)
	}
	st, err = rt.Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(t, st, runtime.NetworkReady); !c.Status || c.Reason != "" {
		t.Errorf("NetworkReady = %v after writing a valid conflist", c)
	}
	var net map[string]any
	if err := json.Unmarshal([]byte(st.Info["network"]), &net); err != nil || net["network"] != "t" {
		t.Errorf(`Info["network"] = %q (%v), want network "t"`, st.Info["network"], err)
	}

	// And its removal too.
	if err := os.Remove(filepath.Join(d.confDir, "10-t.conflist")); err != nil {
		t.Fatal(err)
	}
	st, err = rt.Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(t, st, runtime.NetworkReady); c.Status {
		t.Errorf("NetworkReady = %v after removing the conflist", c)
	}
}

func TestContainerdUnreachable(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(tempDir(t), "no-containerd.sock")
	_, rt := startServing(t, options{containerd: missing})

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	begin := time.Now()
	st, err := rt.Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		t.Fatalf("Status with containerd down, after %s: %v", time.Since(begin), err)
	}
	c := condition(t, st, runtime.RuntimeReady)
	if c.Status || c.Reason != "ContainerdUnreachable" || !strings.Contains(c.Message, missing) {
		t.Errorf("RuntimeReady = %v, want false, ContainerdUnreachable, naming %s", c, missing)
	}
	t.Logf("Status answered in %s", time.Since(begin))
}

// TestStreamedLists: the streamed List calls answer as the List calls do.
func TestStreamedLists(t *testing.T) {
	t.Parallel()
	d, rt := startServing(t, options{})
	ctx := callCtx(t)
	st, err := rt.StreamPodSandboxes(ctx, &runtime.StreamPodSandboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Errorf("StreamPodSandboxes with no pods: %v, want EOF", err)
	}
	im, err := runtime.NewImageServiceClient(d.dial()).StreamImages(ctx, &runtime.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := im.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("StreamImages: %v", err)
		}
	}
	md, err := rt.ListMetricDescriptors(ctx, &runtime.ListMetricDescriptorsRequest{})
	if err != nil || len(md.GetDescriptors()) == 0 {
		t.Errorf("ListMetricDescriptors = %v, %v", md, err)
	}
}

func TestSecondPeapodOnSameSocket(t *testing.T) {
	t.Parallel()
	first, rt := startServing(t, options{})

	second := start(t, options{socket: first.socket})
	if code := second.wait(5 * time.Second); code == 0 {
		t.Errorf("second peapod exited 0")
	}
	if !strings.Contains(second.stderr.String(), "already serving") {
		t.Errorf("second peapod's stderr lacks \"already serving\":\n%s", second.stderr.String())
	}
	if _, err := rt.Version(callCtx(t), &runtime.VersionRequest{}); err != nil {
		t.Errorf("first peapod stopped serving: %v", err)
	}
	if _, err := os.Stat(first.socket); err != nil {
		t.Errorf("first peapod's socket: %v", err)
	}
}

func TestSIGTERM(t *testing.T) {
	t.Parallel()
	d, _ := startServing(t, options{})
	d.signal(syscall.SIGTERM)
	if code := d.wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM\n%s", code, d.stderr.String())
	}
	if _, err := os.Stat(d.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after SIGTERM: %v, want it removed", err)
	}
}

func TestSIGKILLLeavesReplaceableSocket(t *testing.T) {
	t.Parallel()
	d, _ := startServing(t, options{})
	d.signal(syscall.SIGKILL)
	d.wait(5 * time.Second)
	if fi, err := os.Stat(d.socket); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("after SIGKILL the socket should be left behind: %v", err)
	}

	_, rt := startServing(t, options{socket: d.socket})
	if _, err := rt.Version(callCtx(t), &runtime.VersionRequest{}); err != nil {
		t.Errorf("new peapod on the stale socket: %v", err)
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	_, rt := startServing(t, options{extraArgs: []string{"--metrics-address", addr}})
	ctx := callCtx(t)
	for range 3 {
		if _, err := rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: "no-such-container"}); status.Code(err) != codes.NotFound {
		t.Fatalf("ContainerStatus of an unknown container = %v", err)
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	want := []struct{ metric, label1, label2 string }{
		{"peapod_cri_request_duration_seconds_count{", `method="Version"`, ""},
		{"peapod_cri_request_duration_seconds_count{", `method="ContainerStatus"`, ""},
		{"peapod_cri_request_errors_total{", `method="ContainerStatus"`, `code="NotFound"`},
	}
	for _, w := range want {
		found := false
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, w.metric) && strings.Contains(line, w.label1) && strings.Contains(line, w.label2) {
				found = true
			}
		}
		if !found {
			t.Errorf("/metrics has no %s%s %s} line:\n%s", w.metric, w.label1, w.label2, body)
		}
	}
	if strings.Contains(string(body), `peapod_cri_request_errors_total{code="OK"`) {
		t.Errorf("successful calls counted as errors")
	}
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(tempDir(t), "config.toml")
	if err := os.WriteFile(cfg, []byte("listen = \"/tmp/x.sock\"\nno-such-key = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := start(t, options{configFile: cfg})
	if code := d.wait(5 * time.Second); code == 0 {
		t.Errorf("peapod exited 0 with an unknown config key")
	}
	if !strings.Contains(d.stderr.String(), "no-such-key") {
		t.Errorf("stderr does not name the unknown key:\n%s", d.stderr.String())
	}
}

// Start-up recovery runs before any call but Version and Status is served,
// and is retried until containerd answers: a peapod that starts while
// containerd is down answers ListPodSandbox Unavailable, then, once
// containerd is there, recovers and serves.
func TestRecoveryWaitsForContainerd(t *testing.T) {
	t.Parallel()
	proxySock := filepath.Join(tempDir(t), "late-containerd.sock")
	_, rt := startServing(t, options{containerd: proxySock})
	if _, err := rt.Status(callCtx(t), &runtime.StatusRequest{}); err != nil {
		t.Fatalf("Status while recovering: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "recovering") {
		t.Fatalf("ListPodSandbox before containerd is up = %v, want Unavailable while recovering", err)
	}

	// containerd "comes up": a proxy to the real one appears at the address.
	l, err := net.Listen("unix", proxySock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("unix", containerdSock)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	eventually(t, 30*time.Second, "peapod recovers once containerd is up", func() error {
		_, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{})
		return err
	})
}
