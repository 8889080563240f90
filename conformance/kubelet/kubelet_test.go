//go:build kubelet

// Package kubelet is the project's own kubelet end-to-end suite: a stock
// kubelet, standalone (no API server, static pods from a directory), runs
// the pods Kubernetes users run on a CRI runtime, and the suite checks what
// they do through the kubelet's own API, the CRI and the host.
//
//	go test -tags kubelet ./conformance/kubelet -args -endpoint unix:///run/peapod/peapod.sock
//
// conformance/kubelet.sh runs it against peapod on each lab containerd and
// against containerd's built-in CRI as the reference. The suite starts and
// stops the kubelet itself; the runtime must serve no other client (the
// kubelet removes every pod it did not create).
package kubelet

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	endpoint   = flag.String("endpoint", "", "CRI endpoint under test (unix://…)")
	kubeletBin = flag.String("kubelet", "/var/cache/peapod-lab/bin/kubelet", "kubelet binary")
	rootDir    = flag.String("root", "/var/lib/peapod-lab/kubelet", "kubelet root directory (emptied first)")
	runtimeLog = flag.String("runtime-log", "", "runtime's log file: no \"CRI call failed\" may appear in it during the run")
	netnsDir   = flag.String("netns-dir", "", "directory where the runtime pins pod network namespaces: empty again at the end")
	ipamDir    = flag.String("ipam-dir", "/var/lib/cni/networks/peapod-lab", "host-local IPAM directory of the pod network")
	busybox    = flag.String("image", "registry.k8s.io/e2e-test-images/busybox:1.29-2", "busybox image the pods run")
)

// The node's name, and the kubelet's ports (all on 127.0.0.1).
const (
	nodeName     = "peapod-lab-node"
	readOnlyPort = 10255
	securePort   = 10250
	healthzPort  = 10248
	namespace    = "kubelet-suite"
)

// lab is the running kubelet and what the checks share.
var lab struct {
	cmd        *exec.Cmd
	exited     chan struct{}
	manifests  string // static pod directory
	podLogs    string // the kubelet's pod log directory
	hostDir    string // host directories pods mount, by test
	logFile    string
	runtimeOff int64 // size of the runtime's log when the suite began
	cri        runtime.RuntimeServiceClient
	img        runtime.ImageServiceClient

	mu        sync.Mutex
	sandboxes map[string]string // sandbox ID -> pod name, of every pod the suite ran
}

func TestMain(m *testing.M) {
	flag.Parse()
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "FAIL: -endpoint is required")
		os.Exit(1)
	}
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(*endpoint, "unix://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		return 1, err
	}
	defer conn.Close()
	lab.cri = runtime.NewRuntimeServiceClient(conn)
	lab.img = runtime.NewImageServiceClient(conn)
	lab.sandboxes = map[string]string{}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := lab.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: *busybox}}); err != nil {
		return 1, fmt.Errorf("pre-pulling %s: %w", *busybox, err)
	}
	if *runtimeLog != "" {
		if fi, err := os.Stat(*runtimeLog); err == nil {
			lab.runtimeOff = fi.Size()
		}
	}
	if err := startKubelet(); err != nil {
		return 1, err
	}
	code := m.Run()
	if err := stopKubelet(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the kubelet:", err)
		code = 1
	}
	return code, nil
}

// startKubelet runs a standalone kubelet on the endpoint: static pods
// from lab.manifests, the cgroupfs driver, its own root, and its API on
// loopback with anonymous access (for /containerLogs).
func startKubelet() error {
	if err := unmountUnder(*rootDir); err != nil {
		return err
	}
	if err := os.RemoveAll(*rootDir); err != nil {
		return err
	}
	lab.manifests = filepath.Join(*rootDir, "manifests")
	lab.podLogs = filepath.Join(*rootDir, "pod-logs")
	lab.hostDir = filepath.Join(*rootDir, "host")
	lab.logFile = filepath.Join(*rootDir, "kubelet.log")
	for _, d := range []string{lab.manifests, lab.podLogs, lab.hostDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: %[1]s
imageServiceEndpoint: %[1]s
staticPodPath: %[2]s
fileCheckFrequency: 1s
podLogsDir: %[3]s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
address: 127.0.0.1
port: %[4]d
readOnlyPort: %[5]d
healthzBindAddress: 127.0.0.1
healthzPort: %[6]d
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
resolvConf: /etc/resolv.conf
serializeImagePulls: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
`, *endpoint, lab.manifests, lab.podLogs, securePort, readOnlyPort, healthzPort)
	cfgPath := filepath.Join(*rootDir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(lab.logFile)
	if err != nil {
		return err
	}
	cmd := exec.Command(*kubeletBin, "--config", cfgPath, "--root-dir", filepath.Join(*rootDir, "root"),
		"--cert-dir", filepath.Join(*rootDir, "pki"), "--hostname-override", nodeName, "--v", "2")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", *kubeletBin, err)
	}
	lab.cmd = cmd
	lab.exited = make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(lab.exited) }()
	fmt.Printf("kubelet pid %d on %s, log %s\n", cmd.Process.Pid, *endpoint, lab.logFile)

	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", healthzPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-lab.exited:
			return fmt.Errorf("the kubelet exited at start-up (log %s):\n%s", lab.logFile, tail(lab.logFile, 30))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the kubelet is not healthy after 90s (log %s):\n%s", lab.logFile, tail(lab.logFile, 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// stopKubelet stops the kubelet this suite started, by its PID.
func stopKubelet() error {
	if lab.cmd == nil {
		return nil
	}
	lab.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-lab.exited:
	case <-time.After(30 * time.Second):
		lab.cmd.Process.Kill()
		<-lab.exited
		return errors.New("the kubelet did not stop on SIGTERM within 30s")
	}
	// The kubelet makes its root directory a shared mount of itself, and
	// leaves it when it stops.
	return unmountUnder(*rootDir)
}

// unmountUnder unmounts every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := syscall.Unmount(points[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmounting %s: %w", points[i], err)
		}
	}
	return nil
}

// --- static pods ---------------------------------------------------------

// runPod writes pod's manifest and waits until cond holds of its status.
// The pod is deleted when the test ends (unless the test deleted it).
func runPod(t *testing.T, pod *corev1.Pod, cond func(*corev1.Pod) bool, within time.Duration) *corev1.Pod {
	t.Helper()
	pod.APIVersion, pod.Kind = "v1", "Pod"
	pod.Namespace = namespace
	for i := range pod.Spec.Containers {
		defaultContainer(&pod.Spec.Containers[i])
	}
	for i := range pod.Spec.InitContainers {
		defaultContainer(&pod.Spec.InitContainers[i])
	}
	if pod.Spec.TerminationGracePeriodSeconds == nil {
		pod.Spec.TerminationGracePeriodSeconds = ptr(int64(2))
	}
	b, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := manifestPath(pod.Name)
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The kubelet reads only *.yaml/*.json files it finds whole.
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, pod.Name) })
	got := waitPod(t, pod.Name, "started and "+t.Name(), within, cond)
	recordSandboxes(t, got)
	return got
}

func manifestPath(name string) string { return filepath.Join(lab.manifests, name+".json") }

func defaultContainer(c *corev1.Container) {
	if c.Image == "" {
		c.Image = *busybox
	}
	c.ImagePullPolicy = corev1.PullIfNotPresent
}

// deletePod removes a pod's manifest and waits until the kubelet has
// stopped every container of the pod (the kubelet's garbage collection
// removes them later). The kubelet forgets a static pod at once, and stops
// its containers after.
func deletePod(t *testing.T, name string) {
	t.Helper()
	if err := os.Remove(manifestPath(name)); errors.Is(err, os.ErrNotExist) {
		return
	} else if err != nil {
		t.Error(err)
		return
	}
	sel := map[string]string{"io.kubernetes.pod.namespace": namespace, "io.kubernetes.pod.name": name + "-" + nodeName}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := lab.cri.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{
			State:         &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_RUNNING},
			LabelSelector: sel}})
		cancel()
		if p, perr := getPod(name); err == nil && perr == nil && p == nil && len(resp.GetContainers()) == 0 {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Errorf("pod %s still has running containers 60s after its manifest was removed", name)
}

// getPod returns the kubelet's view of a static pod (nil if it has none).
func getPod(name string) (*corev1.Pod, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/pods", readOnlyPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list corev1.PodList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("decoding the kubelet's /pods: %w", err)
	}
	for i := range list.Items {
		if list.Items[i].Name == name+"-"+nodeName && list.Items[i].Namespace == namespace {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

// waitPod polls the pod's status until cond holds, failing the test after
// within with the last status seen.
func waitPod(t *testing.T, name, what string, within time.Duration, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(within)
	var last *corev1.Pod
	var lastErr error
	for {
		p, err := getPod(name)
		if err == nil && p != nil {
			last = p
			if cond(p) {
				return p
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-lab.exited:
			t.Fatalf("the kubelet exited:\n%s", tail(lab.logFile, 30))
		case <-time.After(500 * time.Millisecond):
		}
	}
	b, _ := json.MarshalIndent(last.Status, "", " ")
	t.Fatalf("pod %s not %s within %s (error %v); last status:\n%s", name, what, within, lastErr, b)
	return nil
}

// recordSandboxes remembers the pod's sandboxes for the teardown check.
func recordSandboxes(t *testing.T, pod *corev1.Pod) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := lab.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": string(pod.UID)}}})
	if err != nil {
		t.Errorf("ListPodSandbox for pod %s: %v", pod.Name, err)
		return
	}
	lab.mu.Lock()
	defer lab.mu.Unlock()
	for _, sb := range resp.GetItems() {
		lab.sandboxes[sb.GetId()] = pod.Name
	}
}

// --- status helpers -------------------------------------------------------

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func running(names ...string) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool {
		for _, n := range names {
			if cs := containerStatus(p, n); cs == nil || cs.State.Running == nil {
				return false
			}
		}
		return true
	}
}

func ready(names ...string) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool {
		for _, n := range names {
			if cs := containerStatus(p, n); cs == nil || !cs.Ready {
				return false
			}
		}
		return true
	}
}

func restarted(name string, n int32) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool {
		cs := containerStatus(p, name)
		return cs != nil && cs.RestartCount >= n
	}
}

func terminated(name string) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool {
		cs := containerStatus(p, name)
		return cs != nil && cs.State.Terminated != nil
	}
}

func all(conds ...func(*corev1.Pod) bool) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool {
		for _, c := range conds {
			if !c(p) {
				return false
			}
		}
		return true
	}
}

// containerID is the runtime's ID of a container, from its status.
func containerID(t *testing.T, p *corev1.Pod, name string) string {
	t.Helper()
	cs := containerStatus(p, name)
	if cs == nil || cs.ContainerID == "" {
		t.Fatalf("pod %s has no container %s", p.Name, name)
	}
	_, id, ok := strings.Cut(cs.ContainerID, "://")
	if !ok {
		t.Fatalf("container ID %q is not <runtime>://<id>", cs.ContainerID)
	}
	return id
}

// execIn runs cmd in a container through the CRI, failing the test unless
// it exits 0; it returns the output.
func execIn(t *testing.T, id string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := lab.cri.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 15})
	if err != nil {
		t.Fatalf("exec %q in %s: %v", cmd, id, err)
	}
	if resp.GetExitCode() != 0 {
		t.Fatalf("exec %q in %s: exit %d, stdout %q, stderr %q", cmd, id, resp.GetExitCode(), resp.GetStdout(), resp.GetStderr())
	}
	return strings.TrimSpace(string(resp.GetStdout()))
}

// containerLogs reads a container's log through the kubelet's API.
func containerLogs(t *testing.T, pod, ctr string, previous bool) string {
	t.Helper()
	u := fmt.Sprintf("https://127.0.0.1:%d/containerLogs/%s/%s-%s/%s", securePort, namespace, pod, nodeName, ctr)
	if previous {
		u += "?previous=true"
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The kubelet's self-signed serving certificate, on loopback.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, b)
	}
	return string(b)
}

// hostDir makes a host directory for a pod of the test to mount.
func hostDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(lab.hostDir, strings.NewReplacer("/", "-").Replace(t.Name()))
	if err := os.MkdirAll(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func ptr[T any](v T) *T { return &v }
