//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"cmp"
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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/failpoint"
)

// The lab's pod network: a bridge with host-local IPAM and portmap.
const (
	labCNIConfDir = "/etc/cni/net.d"
	// hostLocalDir is where host-local records the lab network's IPs, one
	// file per IP holding the container ID that has it.
	hostLocalDir = "/var/lib/cni/networks/peapod-lab"
	// snapshotter is the snapshotter peapod uses.
	snapshotter = "overlayfs"

	podDNSServer = "10.96.0.10"
	podDNSSearch = "peapod-it.svc.cluster.local"
	// podTimeout bounds the pod RPCs that may pull the pause image or wait
	// for a container to stop.
	podTimeout = time.Minute
)

var podSubnet = mustCIDR("10.88.0.0/16")

func mustCIDR(cidr string) *net.IPNet {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(err)
	}
	return n
}

// podEnv is one test's world of pods: a containerd namespace and a root and
// state directory of its own, which outlive each peapod started on them, so
// that a test can restart peapod and find its pods again.
type podEnv struct {
	t      *testing.T
	ns     string
	dir    string
	socket string
	d      *daemon // the peapod started last
	// config is added to the config file of every peapod the env starts.
	config string
	// cniConfDir replaces the lab's CNI config directory when set.
	cniConfDir string
	// pauseImage replaces the lab's pause image when set.
	pauseImage string
	// containerd replaces the lab's containerd (its socket) when set.
	containerd string
	client     *client.Client

	mu   sync.Mutex
	made []string // IDs of the pods and containers made through a client of the env's peapods
}

// ctrd is a client of the env's containerd, to look behind peapod's back.
func (e *podEnv) ctrd() *client.Client {
	e.t.Helper()
	if e.containerd == "" {
		return containerdClient(e.t)
	}
	if e.client == nil {
		c, err := client.New(e.containerd)
		if err != nil {
			e.t.Fatalf("containerd client for %s: %v", e.containerd, err)
		}
		e.client = c // closed by newPodEnv's cleanup, after removeLeftovers
	}
	return e.client
}

// newPodEnv prepares a podEnv. When the test ends, after every peapod it
// started has been killed, a fresh peapod stops and removes through the CRI
// whatever pods are left; then the images go with the namespace.
func newPodEnv(t *testing.T) *podEnv {
	t.Helper()
	e := &podEnv{t: t, ns: imageNamespace(t), dir: tempDir(t)}
	e.socket = filepath.Join(e.dir, "peapod.sock")
	t.Cleanup(func() { stopIOServer(t, e.state()) }) // after the leftovers' removal
	t.Cleanup(func() {
		if e.client != nil {
			e.client.Close()
		}
	})
	t.Cleanup(e.removeLeftovers)
	return e
}

func (e *podEnv) root() string  { return filepath.Join(e.dir, "root") }
func (e *podEnv) state() string { return filepath.Join(e.dir, "state") }
func (e *podEnv) netnsDir() string {
	return filepath.Join(e.state(), "netns")
}

// start starts a peapod on the env's namespace, root, state and socket,
// with the lab's CNI network, registry mirrors and pause image; env is added
// to its environment.
func (e *podEnv) start(env ...string) *daemon {
	e.t.Helper()
	e.d = start(e.t, options{socket: e.socket, env: env, configFile: e.configFile(), containerd: e.containerd, extraArgs: []string{
		"--containerd-namespace", e.ns,
		"--root", e.root(),
		"--state", e.state(),
		"--cni-conf-dir", cmp.Or(e.cniConfDir, labCNIConfDir),
		"--registry-config-path", registryConfig,
		"--pause-image", cmp.Or(e.pauseImage, pause310),
	}})
	e.d.created = e.noteCreated
	return e.d
}

// configFile writes the env's config file: the runc handler runs the lab's
// runc when PEAPOD_TEST_RUNC names it (as `make test-integration` does), so
// that both lab containerds run pods with the same, current runc.
func (e *podEnv) configFile() string {
	e.t.Helper()
	path := filepath.Join(e.dir, "config.toml")
	content := e.config
	if runc := os.Getenv("PEAPOD_TEST_RUNC"); runc != "" {
		content += fmt.Sprintf("\n[runtimes.runc]\nbinary = %q\n", runc)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// serve starts a peapod and waits until it serves.
func (e *podEnv) serve(env ...string) (runtime.RuntimeServiceClient, runtime.ImageServiceClient) {
	e.t.Helper()
	d := e.start(env...)
	rt := d.waitServing()
	return rt, runtime.NewImageServiceClient(d.dial())
}

// removeLeftovers removes, through the CRI, the pods a test left behind,
// then checks that nothing of any pod the env made is left: no containerd
// container, snapshot, sandbox record, netns, mount, file, CNI result, IP,
// hostPort rule or process (those of the env's containerd namespace too:
// shims and containers of pods whose creation no answer named).
func (e *podEnv) removeLeftovers() {
	t := e.t
	if len(e.containerdContainers()) != 0 || len(e.netnsFiles()) != 0 {
		e.removePods()
	}
	made := e.madeIDs()
	var err error
	deadline := time.Now().Add(10 * time.Second) // for shims to exit after their task's deletion
	for {
		err = e.leftoversOf(made, append(made, e.ns))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("left behind by the pods of %s: %v", e.ns, err)
	}
}

// removePods stops and removes every pod through a fresh peapod, which it
// stops again: its command line names the env's namespace, as the shims
// and containers whose leftovers removeLeftovers looks for do.
func (e *podEnv) removePods() {
	t := e.t
	t.Logf("cleaning up the pods left in %s", e.ns)
	rt, _ := e.serve()
	defer func() {
		e.d.signal(syscall.SIGTERM)
		e.d.wait(podTimeout)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), podTimeout)
	defer cancel()
	list, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("cleanup: ListPodSandbox: %v", err)
		return
	}
	for _, sb := range list.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("cleanup: StopPodSandbox(%s): %v", sb.Id, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("cleanup: RemovePodSandbox(%s): %v", sb.Id, err)
		}
	}
}

// noteCreated records the ID of a pod or container made through a client
// of one of the env's peapods.
func (e *podEnv) noteCreated(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.made = append(e.made, id)
}

// madeIDs are the IDs of the pods and containers made through a client of
// one of the env's peapods.
func (e *podEnv) madeIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.made)
}

// ctrdCtx is a context for containerd calls in the env's namespace.
func (e *podEnv) ctrdCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(namespaces.WithNamespace(context.Background(), e.ns), 10*time.Second)
}

// containerdContainers lists the IDs of the containerd containers in the
// env's namespace.
func (e *podEnv) containerdContainers() []string {
	e.t.Helper()
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	ctrs, err := e.ctrd().ContainerService().List(ctx)
	if err != nil {
		e.t.Fatalf("listing containerd containers in %s: %v", e.ns, err)
	}
	var ids []string
	for _, c := range ctrs {
		ids = append(ids, c.ID)
	}
	return ids
}

// uncommittedSnapshots lists the snapshots in the env's namespace that are
// not image layers: a container's writable layer left behind.
func (e *podEnv) uncommittedSnapshots() []string {
	e.t.Helper()
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	var keys []string
	err := e.ctrd().SnapshotService(snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			keys = append(keys, info.Name)
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("listing snapshots in %s: %v", e.ns, err)
	}
	return keys
}

// sandboxStoreRecords lists the records of containerd's sandbox store in
// the env's namespace (containerd 1.6 has no such store: none).
func (e *podEnv) sandboxStoreRecords() []string {
	e.t.Helper()
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	records, err := e.ctrd().SandboxStore().List(ctx)
	if errdefs.IsNotImplemented(err) {
		return nil
	}
	if err != nil {
		e.t.Fatalf("listing the sandbox store in %s: %v", e.ns, err)
	}
	var out []string
	for _, r := range records {
		out = append(out, r.ID)
	}
	return out
}

// task is the containerd task of container id in the env's namespace, or
// nil when it has none.
func (e *podEnv) task(ctx context.Context, id string) client.Task {
	ctr, err := e.ctrd().LoadContainer(ctx, id)
	if err != nil {
		return nil
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil
	}
	return task
}

// taskStatus is the status of a containerd task in the env's namespace, or
// "" when it has none.
func (e *podEnv) taskStatus(id string) string {
	e.t.Helper()
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	task := e.task(ctx, id)
	if task == nil {
		return ""
	}
	st, err := task.Status(ctx)
	if err != nil {
		return ""
	}
	return string(st.Status)
}

// taskPid is the PID of container id's task, 0 if it has none.
func (e *podEnv) taskPid(id string) uint32 {
	e.t.Helper()
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	if task := e.task(ctx, id); task != nil {
		return task.Pid()
	}
	return 0
}

// netnsFiles lists the network namespaces pinned in the env's state.
func (e *podEnv) netnsFiles() []string {
	e.t.Helper()
	entries, err := os.ReadDir(e.netnsDir())
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		out = append(out, filepath.Join(e.netnsDir(), en.Name()))
	}
	return out
}

// mountsUnderState lists the mount points under the env's state directory
// (pinned network namespaces, pods' /dev/shm).
func (e *podEnv) mountsUnderState() []string {
	e.t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], e.state()+"/") {
			out = append(out, fields[4])
		}
	}
	return out
}

// sandboxDirs lists the per-sandbox directories left in root and state.
func (e *podEnv) sandboxDirs() []string {
	var out []string
	for _, dir := range []string{filepath.Join(e.root(), "sandboxes"), filepath.Join(e.state(), "sandboxes")} {
		entries, _ := os.ReadDir(dir)
		for _, en := range entries {
			out = append(out, filepath.Join(dir, en.Name()))
		}
	}
	return out
}

// ipAllocations lists the lab network's IPs held by the container ID.
func ipAllocations(t *testing.T, id string) []string {
	t.Helper()
	entries, err := os.ReadDir(hostLocalDir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, en := range entries {
		if net.ParseIP(en.Name()) == nil {
			continue // lock, last_reserved_ip.0
		}
		b, err := os.ReadFile(filepath.Join(hostLocalDir, en.Name()))
		if err != nil {
			continue // released meanwhile
		}
		if owner, _, _ := strings.Cut(string(b), "\n"); strings.TrimSpace(owner) == id {
			ips = append(ips, en.Name())
		}
	}
	return ips
}

// hostPortRules lists the iptables NAT rules portmap made for the container
// ID. The lab installs iptables (conformance/packages.sh): a failing
// iptables-save fails the test.
func hostPortRules(t *testing.T, id string) (rules []string) {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save, to check hostPort rules: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, `id: \"`+id+`\"`) {
			rules = append(rules, line)
		}
	}
	return rules
}

// processesOf lists the processes whose cgroup or command line names one of
// the IDs: a container's processes, its shim, its log driver.
func processesOf(ids ...string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, en := range entries {
		pid, err := strconv.Atoi(en.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if stat, _ := os.ReadFile(filepath.Join("/proc", en.Name(), "stat")); bytes.Contains(stat, []byte(") Z ")) {
			continue // exited, not yet reaped (by init, for orphans of a killed peapod): it holds nothing
		}
		cg, _ := os.ReadFile(filepath.Join("/proc", en.Name(), "cgroup"))
		cmd, _ := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		for _, id := range ids {
			if bytes.Contains(cg, []byte(id)) || bytes.Contains(cmd, []byte(id)) {
				out = append(out, fmt.Sprintf("%d (%s)", pid, bytes.ReplaceAll(bytes.TrimRight(cmd, "\x00"), []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return out
}

// leftovers reports what is still around of the env's pods: containerd
// containers and writable snapshots, pinned network namespaces and mounts,
// sandbox directories, and, for the given IDs, IP allocations, hostPort
// rules and processes. Every pod of the env must have been removed.
func (e *podEnv) leftovers(sandboxID string, containerIDs ...string) error {
	e.t.Helper()
	var sandboxes []string
	if sandboxID != "" {
		sandboxes = []string{sandboxID}
	}
	return e.leftoversOf(sandboxes, append(sandboxes, containerIDs...))
}

// leftoversOf is leftovers for any number of sandboxes: what is left of
// the env's pods, the CNI results, IPs and hostPort rules of sandboxes,
// and the processes of ids.
func (e *podEnv) leftoversOf(sandboxes, ids []string) error {
	e.t.Helper()
	var errs []error
	add := func(what string, items []string) {
		if len(items) > 0 {
			errs = append(errs, fmt.Errorf("%s: %q", what, items))
		}
	}
	add("containerd containers", e.containerdContainers())
	add("writable snapshots", e.uncommittedSnapshots())
	add("network namespace files", e.netnsFiles())
	add("mounts under the state directory", e.mountsUnderState())
	add("sandbox directories", e.sandboxDirs())
	add("sandbox store records", e.sandboxStoreRecords())
	add("exec fifos", e.execFifoDirs())
	for _, id := range sandboxes {
		add("CNI results cached for sandbox "+id, e.cniCacheFiles(id))
		add("IP allocations of sandbox "+id, ipAllocations(e.t, id))
		add("hostPort rules of sandbox "+id, hostPortRules(e.t, id))
	}
	if len(ids) > 0 {
		add("processes", processesOf(ids...))
	}
	return errors.Join(errs...)
}

// execFifoDirs lists the fifo directories of execs (one each): an exec's
// is removed when it is done, or, left by a dead peapod, by the next one's
// recovery.
func (e *podEnv) execFifoDirs() []string {
	dirs, _ := filepath.Glob(filepath.Join(e.state(), "containers", "*", "exec", "*"))
	legacy, _ := filepath.Glob(filepath.Join(e.state(), "fifo", "*"))
	return append(dirs, legacy...)
}

// cniCacheFiles lists the results libcni cached for a sandbox's ADDs (the
// pod network's and the loopback's), which its DELs remove.
func (e *podEnv) cniCacheFiles(sandboxID string) []string {
	matches, _ := filepath.Glob(filepath.Join(e.state(), "cni", "results", "*"+sandboxID+"*"))
	return matches
}

// eventually polls check until it succeeds, failing the test with check's
// last error after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func podCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), podTimeout)
	t.Cleanup(cancel)
	return ctx
}

// podConfig is a pod with a hostname, a DNS config and a log directory.
func (e *podEnv) podConfig(name string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{
			Name: name, Namespace: "peapod-it", Uid: "uid-" + name + "-" + e.ns, Attempt: 1,
		},
		Hostname:     name + "-host",
		LogDirectory: filepath.Join(e.dir, "logs", name),
		DnsConfig: &runtime.DNSConfig{
			Servers: []string{podDNSServer}, Searches: []string{podDNSSearch}, Options: []string{"ndots:5"},
		},
		Labels:      map[string]string{"io.peapod.test": "pod", "pod": name},
		Annotations: map[string]string{"io.peapod.test/owner": e.ns},
		Linux:       &runtime.LinuxPodSandboxConfig{},
	}
}

// busybox is a busybox container running script under sh, logging to
// <name>.log in the pod's log directory.
func busybox(name, script string, mounts ...*runtime.Mount) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: name},
		Image:    &runtime.ImageSpec{Image: busyboxRef},
		Command:  []string{"sh", "-c", script},
		LogPath:  name + ".log",
		Mounts:   mounts,
		Labels:   map[string]string{"container": name},
		Linux:    &runtime.LinuxContainerConfig{},
	}
}

func runPod(t *testing.T, rt runtime.RuntimeServiceClient, cfg *runtime.PodSandboxConfig) string {
	t.Helper()
	begin := time.Now()
	resp, err := rt.RunPodSandbox(podCtx(t), &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox(%s): %v", cfg.Metadata.Name, err)
	}
	t.Logf("pod %s is %s, ran in %s", cfg.Metadata.Name, resp.PodSandboxId, time.Since(begin))
	return resp.PodSandboxId
}

func startContainer(t *testing.T, rt runtime.RuntimeServiceClient, sandboxID string, sbCfg *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig) string {
	t.Helper()
	ctx := podCtx(t)
	resp, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sandboxID, Config: cfg, SandboxConfig: sbCfg})
	if err != nil {
		t.Fatalf("CreateContainer(%s): %v", cfg.Metadata.Name, err)
	}
	if _, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatalf("StartContainer(%s %s): %v", cfg.Metadata.Name, resp.ContainerId, err)
	}
	return resp.ContainerId
}

func sandboxStatus(t *testing.T, rt runtime.RuntimeServiceClient, id string) *runtime.PodSandboxStatusResponse {
	t.Helper()
	resp, err := rt.PodSandboxStatus(callCtx(t), &runtime.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s): %v", id, err)
	}
	return resp
}

func containerStatus(t *testing.T, rt runtime.RuntimeServiceClient, id string) *runtime.ContainerStatusResponse {
	t.Helper()
	resp, err := rt.ContainerStatus(callCtx(t), &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	return resp
}

// verboseInfo decodes the "info" JSON of a verbose status.
func verboseInfo(t *testing.T, info map[string]string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(info["info"]), &m); err != nil {
		t.Fatalf("verbose info %q: %v", info["info"], err)
	}
	return m
}

func infoPid(t *testing.T, info map[string]string) int {
	t.Helper()
	pid, _ := verboseInfo(t, info)["pid"].(float64)
	return int(pid)
}

// execSync runs cmd in a container and returns its stdout and exit code.
func execSync(t *testing.T, rt runtime.RuntimeServiceClient, id string, cmd ...string) (string, int32) {
	t.Helper()
	resp, err := rt.ExecSync(podCtx(t), &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("ExecSync(%s, %q): %v", id, cmd, err)
	}
	return string(resp.Stdout), resp.ExitCode
}

// logLine is one entry of a CRI log file.
type logLine struct {
	time   time.Time
	stream string
	tag    string
	msg    string
}

var logLinePattern = regexp.MustCompile(`^(\S+) (stdout|stderr) ([PF]) (.*)$`)

// readLog parses a CRI log file; every line must be in the CRI format.
func readLog(path string) ([]logLine, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = b[:bytes.LastIndexByte(b, '\n')+1] // a line being written is not one yet
	if len(b) == 0 {
		return nil, nil
	}
	var out []logLine
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		m := logLinePattern.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("%s:%d: not a CRI log line: %q", path, i+1, line)
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: timestamp: %v", path, i+1, err)
		}
		out = append(out, logLine{time: ts, stream: m[2], tag: m[3], msg: m[4]})
	}
	return out, nil
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// wantFirstLine waits until the CRI log at path starts with the line msg.
func wantFirstLine(t *testing.T, path, msg string) {
	t.Helper()
	eventually(t, 10*time.Second, "the container's first line of output", func() error {
		if lines, err := readLog(path); err != nil || len(lines) == 0 || lines[0].msg != msg {
			return fmt.Errorf("log %v, %v", lines, err)
		}
		return nil
	})
}

// crashInStart has peapod die in a StartContainer of container id, at
// failpoint fp: the env's peapod is killed and started again with the
// failpoint armed, the start is answered Unavailable, and peapod is gone
// when it returns (e.serve starts the next one).
func (e *podEnv) crashInStart(id, fp string) {
	e.t.Helper()
	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	d := e.start(failpoint.EnvVar + "=" + fp)
	rt := d.waitServing()
	_, err := rt.StartContainer(podCtx(e.t), &runtime.StartContainerRequest{ContainerId: id})
	wantCode(e.t, "StartContainer as peapod dies", err, codes.Unavailable)
	d.wait(10 * time.Second)
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s = %v (%s), want %s", what, err, got, want)
	}
}

func TestPodLifecycle(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)

	hostPort := freePort(t)
	cfg := e.podConfig("web")
	cfg.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 80, HostPort: int32(hostPort)}}
	before := time.Now()
	sbID := runPod(t, rt, cfg)

	// The sandbox: ready, with an IP of the pod network, which host-local
	// holds for it, in a pinned network namespace.
	sbSt := sandboxStatus(t, rt, sbID)
	st := sbSt.Status
	if st.Id != sbID || st.State != runtime.PodSandboxState_SANDBOX_READY || !proto.Equal(st.Metadata, cfg.Metadata) {
		t.Errorf("PodSandboxStatus = %v, want %s READY with metadata %v", st, sbID, cfg.Metadata)
	}
	if created := time.Unix(0, st.CreatedAt); created.Before(before.Add(-time.Second)) || created.After(time.Now()) {
		t.Errorf("CreatedAt %s, RunPodSandbox called at %s", created, before)
	}
	podIP := net.ParseIP(st.GetNetwork().GetIp())
	if podIP == nil || !podSubnet.Contains(podIP) {
		t.Fatalf("pod IP %q, want one in %s", st.GetNetwork().GetIp(), podSubnet)
	}
	if ips := ipAllocations(t, sbID); !slices.Equal(ips, []string{podIP.String()}) {
		t.Errorf("host-local allocations of %s = %q, want [%s]", sbID, ips, podIP)
	}
	netnsPath, _ := verboseInfo(t, sbSt.Info)["netns"].(string)
	if filepath.Dir(netnsPath) != e.netnsDir() {
		t.Errorf("netns %q, want one in %s", netnsPath, e.netnsDir())
	}
	if _, err := os.Stat(netnsPath); err != nil {
		t.Errorf("netns of the ready pod: %v", err)
	}
	if rules := hostPortRules(t, sbID); len(rules) == 0 {
		t.Errorf("no hostPort rule names %s", sbID)
	}
	list, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{})
	if err != nil || len(list.Items) != 1 || list.Items[0].Id != sbID || list.Items[0].State != runtime.PodSandboxState_SANDBOX_READY ||
		list.Items[0].CreatedAt != st.CreatedAt || !proto.Equal(list.Items[0].Metadata, cfg.Metadata) {
		t.Errorf("ListPodSandbox = %v, %v; want just %s READY", list.GetItems(), err, sbID)
	}

	// A web server, writing "started" to its log first.
	webID := startContainer(t, rt, sbID, cfg, busybox("web", "echo started; exec httpd -f -p 80 -h /etc"))
	web := containerStatus(t, rt, webID).Status
	wantLog := filepath.Join(cfg.LogDirectory, "web.log")
	if web.State != runtime.ContainerState_CONTAINER_RUNNING || web.LogPath != wantLog || web.StartedAt < web.CreatedAt {
		t.Errorf("ContainerStatus(web) = %v, want RUNNING, log %s", web, wantLog)
	}
	eventually(t, 10*time.Second, "web's log has its first line", func() error {
		lines, err := readLog(wantLog)
		if err != nil {
			return err
		}
		if len(lines) == 0 {
			return errors.New("empty log")
		}
		l := lines[0]
		if l.stream != "stdout" || l.tag != "F" || l.msg != "started" {
			return fmt.Errorf("first line %+v, want stdout F started", l)
		}
		if age := time.Since(l.time); age < 0 || age > time.Minute {
			return fmt.Errorf("first line stamped %s, %s ago", l.time, age)
		}
		return nil
	})

	// The pod's hostname and DNS config.
	if out, _ := execSync(t, rt, webID, "hostname"); out != cfg.Hostname+"\n" {
		t.Errorf("hostname in the pod = %q, want %q", out, cfg.Hostname)
	}
	resolv, _ := execSync(t, rt, webID, "cat", "/etc/resolv.conf")
	for _, want := range []string{"nameserver " + podDNSServer, "search " + podDNSSearch, "options ndots:5"} {
		if !strings.Contains(resolv, want) {
			t.Errorf("/etc/resolv.conf in the pod lacks %q:\n%s", want, resolv)
		}
	}
	if _, code := execSync(t, rt, webID, "sh", "-c", "exit 5"); code != 5 {
		t.Errorf("ExecSync of `exit 5`: exit code %d", code)
	}

	// A second container of the pod reaches the first on localhost.
	clientID := startContainer(t, rt, sbID, cfg, busybox("client", "trap 'exit 7' TERM; while true; do sleep 0.1; done"))
	eventually(t, 10*time.Second, "the client container gets the web's /hostname over localhost", func() error {
		resp, err := rt.ExecSync(podCtx(t), &runtime.ExecSyncRequest{ContainerId: clientID, Cmd: []string{"wget", "-qO-", "http://127.0.0.1:80/hostname"}, Timeout: 5})
		if err != nil {
			return err
		}
		if resp.ExitCode != 0 || string(resp.Stdout) != cfg.Hostname+"\n" {
			return fmt.Errorf("exit %d, stdout %q, stderr %q", resp.ExitCode, resp.Stdout, resp.Stderr)
		}
		return nil
	})
	ctrs, err := rt.ListContainers(callCtx(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: sbID}})
	if err != nil || len(ctrs.Containers) != 2 || ctrs.Containers[0].Id != webID || ctrs.Containers[1].Id != clientID {
		t.Errorf("ListContainers(pod %s) = %v, %v; want web and client", sbID, ctrs.GetContainers(), err)
	}

	// The hostPort answers on the host.
	url := fmt.Sprintf("http://127.0.0.1:%d/hostname", hostPort)
	eventually(t, 10*time.Second, "GET "+url+" from the host", func() error {
		body, err := httpGet(url)
		if err == nil && body != cfg.Hostname+"\n" {
			err = fmt.Errorf("body %q", body)
		}
		return err
	})

	// An exec that outlives its timeout fails promptly, and is killed.
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err = rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: clientID, Cmd: []string{"sleep", "10"}, Timeout: 1})
	cancel()
	took := time.Since(begin)
	wantCode(t, "ExecSync(sleep 10) with a 1 s timeout", err, codes.DeadlineExceeded)
	if took > 5*time.Second {
		t.Errorf("ExecSync with a 1 s timeout answered after %s", took)
	}
	t.Logf("ExecSync with a 1 s timeout answered in %s: %v", took, err)
	// The exec was killed, and its exit awaited, before the answer.
	if ps, _ := execSync(t, rt, clientID, "ps", "-o", "pid,args"); strings.Contains(ps, "sleep 10") {
		t.Errorf("the timed-out exec still runs:\n%s", ps)
	}

	// StopContainer: SIGKILL at once with no timeout; the stop signal with one.
	if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: webID, Timeout: 0}); err != nil {
		t.Fatalf("StopContainer(web): %v", err)
	}
	web = containerStatus(t, rt, webID).Status
	if web.State != runtime.ContainerState_CONTAINER_EXITED || web.ExitCode != 137 || web.Reason != "Error" || web.FinishedAt < web.StartedAt {
		t.Errorf("web after StopContainer: state %s, exit %d, reason %q, started %d, finished %d; want EXITED 137 Error",
			web.State, web.ExitCode, web.Reason, web.StartedAt, web.FinishedAt)
	}
	begin = time.Now()
	if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: clientID, Timeout: 30}); err != nil {
		t.Fatalf("StopContainer(client): %v", err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("StopContainer(client), which exits on SIGTERM, took %s", took)
	}
	client := containerStatus(t, rt, clientID).Status
	if client.State != runtime.ContainerState_CONTAINER_EXITED || client.ExitCode != 7 || client.Reason != "Error" || client.FinishedAt < client.StartedAt {
		t.Errorf("client after StopContainer: state %s, exit %d, reason %q; want EXITED 7 Error", client.State, client.ExitCode, client.Reason)
	}
	for _, id := range []string{webID, clientID} {
		if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
			t.Errorf("StopContainer(%s) again: %v", id, err)
		}
	}

	// StopPodSandbox: not ready, network gone.
	for range 2 {
		if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
	}
	if st := sandboxStatus(t, rt, sbID).Status; st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("state after StopPodSandbox = %s", st.State)
	}
	if _, err := os.Stat(netnsPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns %s after StopPodSandbox: %v, want it gone", netnsPath, err)
	}
	if ips := ipAllocations(t, sbID); len(ips) != 0 {
		t.Errorf("host-local allocations of %s after StopPodSandbox: %q", sbID, ips)
	}
	if rules := hostPortRules(t, sbID); len(rules) != 0 {
		t.Errorf("hostPort rules after StopPodSandbox: %q", rules)
	}
	if _, err := httpGet(url); err == nil {
		t.Errorf("GET %s answers after StopPodSandbox", url)
	}

	// RemovePodSandbox: gone, containers too, and nothing left anywhere.
	for range 2 {
		if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
	}
	if list, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{}); err != nil || len(list.Items) != 0 {
		t.Errorf("ListPodSandbox after RemovePodSandbox = %v, %v", list.GetItems(), err)
	}
	if ctrs, err := rt.ListContainers(callCtx(t), &runtime.ListContainersRequest{}); err != nil || len(ctrs.Containers) != 0 {
		t.Errorf("ListContainers after RemovePodSandbox = %v, %v", ctrs.GetContainers(), err)
	}
	_, err = rt.PodSandboxStatus(callCtx(t), &runtime.PodSandboxStatusRequest{PodSandboxId: sbID})
	wantCode(t, "PodSandboxStatus of a removed pod", err, codes.NotFound)
	_, err = rt.ContainerStatus(callCtx(t), &runtime.ContainerStatusRequest{ContainerId: webID})
	wantCode(t, "ContainerStatus of a removed pod's container", err, codes.NotFound)
	for _, id := range []string{webID, clientID} {
		if _, err := rt.StopContainer(callCtx(t), &runtime.StopContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("StopContainer of removed %s: %v", id, err)
		}
		if _, err := rt.RemoveContainer(callCtx(t), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("RemoveContainer of removed %s: %v", id, err)
		}
	}
	if _, err := rt.StopPodSandbox(callCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Errorf("StopPodSandbox of a removed pod: %v", err)
	}
	eventually(t, 10*time.Second, "nothing of the pod is left", func() error {
		return e.leftovers(sbID, webID, clientID)
	})
	if _, err := os.Stat(wantLog); err != nil {
		t.Errorf("the log outlives its container (the kubelet removes it): %v", err)
	}
}

// Unknown IDs: stopping and removing succeed, status is NotFound.
func TestPodUnknownIDs(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, _ := e.serve()
	ctx := callCtx(t)
	unknown := strings.Repeat("ab", 32)

	if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: unknown}); err != nil {
		t.Errorf("StopPodSandbox(unknown) = %v, want success", err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: unknown}); err != nil {
		t.Errorf("RemovePodSandbox(unknown) = %v, want success", err)
	}
	if _, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: unknown}); err != nil {
		t.Errorf("StopContainer(unknown) = %v, want success", err)
	}
	if _, err := rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: unknown}); err != nil {
		t.Errorf("RemoveContainer(unknown) = %v, want success", err)
	}
	_, err := rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: unknown})
	wantCode(t, "PodSandboxStatus(unknown)", err, codes.NotFound)
	_, err = rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: unknown})
	wantCode(t, "ContainerStatus(unknown)", err, codes.NotFound)
	_, err = rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: unknown})
	wantCode(t, "StartContainer(unknown)", err, codes.NotFound)
	_, err = rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: unknown, Cmd: []string{"true"}})
	wantCode(t, "ExecSync(unknown)", err, codes.NotFound)
	_, err = rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: unknown, Config: busybox("c", "true")})
	wantCode(t, "CreateContainer in an unknown pod", err, codes.NotFound)
	if list, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err != nil || len(list.Items) != 0 {
		t.Errorf("ListPodSandbox = %v, %v; want none", list.GetItems(), err)
	}
}

// Bad input is InvalidArgument; a pod or container name taken is AlreadyExists.
func TestPodBadInputAndNameClash(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	ctx := callCtx(t)

	noUID := e.podConfig("no-uid")
	noUID.Metadata.Uid = ""
	for what, cfg := range map[string]*runtime.PodSandboxConfig{
		"no config":   nil,
		"no metadata": {Hostname: "x"},
		"no uid":      noUID,
	} {
		_, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		wantCode(t, "RunPodSandbox with "+what, err, codes.InvalidArgument)
	}
	_, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: e.podConfig("bad-handler"), RuntimeHandler: "no-such-handler"})
	wantCode(t, "RunPodSandbox with an unknown runtime handler", err, codes.InvalidArgument)
	calls := map[string]func() error{
		"PodSandboxStatus": func() error {
			_, err := rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{})
			return err
		},
		"StopPodSandbox": func() error {
			_, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{})
			return err
		},
		"RemovePodSandbox": func() error {
			_, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{})
			return err
		},
		"CreateContainer": func() error {
			_, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{Config: busybox("c", "true")})
			return err
		},
		"StartContainer": func() error {
			_, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{})
			return err
		},
		"StopContainer": func() error {
			_, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{})
			return err
		},
		"RemoveContainer": func() error {
			_, err := rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{})
			return err
		},
		"ContainerStatus": func() error {
			_, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{})
			return err
		},
		"ExecSync": func() error {
			_, err := rt.ExecSync(ctx, &runtime.ExecSyncRequest{Cmd: []string{"true"}})
			return err
		},
	}
	for name, call := range calls {
		wantCode(t, name+" with no ID", call(), codes.InvalidArgument)
	}
	if list, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err != nil || len(list.Items) != 0 {
		t.Errorf("ListPodSandbox after failed runs = %v, %v; want none", list.GetItems(), err)
	}

	pull(t, ic, busyboxRef)
	cfg := e.podConfig("dup")
	sbID := runPod(t, rt, cfg)
	_, err = rt.RunPodSandbox(podCtx(t), &runtime.RunPodSandboxRequest{Config: cfg})
	wantCode(t, "RunPodSandbox of a pod name taken", err, codes.AlreadyExists)
	if err != nil && !strings.Contains(status.Convert(err).Message(), sbID) {
		t.Errorf("AlreadyExists error %q does not name the pod holding the name, %s", status.Convert(err).Message(), sbID)
	}

	_, err = rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sbID, Config: &runtime.ContainerConfig{Image: &runtime.ImageSpec{Image: busyboxRef}}, SandboxConfig: cfg})
	wantCode(t, "CreateContainer with no metadata", err, codes.InvalidArgument)
	_, err = rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sbID, Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "noimage"}}, SandboxConfig: cfg})
	wantCode(t, "CreateContainer with no image", err, codes.InvalidArgument)
	privileged := busybox("privileged", "true")
	privileged.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{Privileged: true}}
	_, err = rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sbID, Config: privileged, SandboxConfig: cfg})
	wantCode(t, "CreateContainer of a privileged container in an unprivileged pod", err, codes.InvalidArgument)
	escape := busybox("escape", "true")
	escape.LogPath = "../../escaped.log"
	_, err = rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sbID, Config: escape, SandboxConfig: cfg})
	wantCode(t, "CreateContainer with a log path outside the pod's log directory", err, codes.InvalidArgument)
	ctrCfg := busybox("sleeper", "exec sleep 3600")
	id := startContainer(t, rt, sbID, cfg, ctrCfg)
	_, err = rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sbID, Config: ctrCfg, SandboxConfig: cfg})
	wantCode(t, "CreateContainer of a container name taken", err, codes.AlreadyExists)
	_, err = rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id})
	wantCode(t, "ExecSync with no command", err, codes.InvalidArgument)
	_, err = rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id})
	wantCode(t, "StartContainer of a running container", err, codes.FailedPrecondition)

	// The name is free again once the pod is removed.
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	again := runPod(t, rt, cfg)
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: again}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	eventually(t, 10*time.Second, "nothing of the pods is left", func() error {
		return errors.Join(e.leftovers(sbID, id), e.leftovers(again))
	})
}

// An exited container keeps nothing running: its task (and with it the log
// driver and the runc state) is released when it exits, before the kubelet
// removes it, whether it exited by itself, was stopped, or exited while
// peapod was down. Its status, exit code and complete log remain.
func TestExitedContainerReleasesItsTask(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("release")
	sb := runPod(t, rt, cfg)

	released := func(id string, exitCode int32, lastLine string) {
		t.Helper()
		eventually(t, 20*time.Second, "container "+id+" exits and lets go of its task", func() error {
			st := containerStatus(t, rt, id).GetStatus()
			if st.GetState() != runtime.ContainerState_CONTAINER_EXITED {
				return fmt.Errorf("container is %s", st.GetState())
			}
			if st.GetExitCode() != exitCode {
				return fmt.Errorf("exit code %d, want %d", st.GetExitCode(), exitCode)
			}
			if ts := e.taskStatus(id); ts != "" {
				return fmt.Errorf("its task is still there, %s", ts)
			}
			if p := processesOf(id); len(p) > 0 {
				return fmt.Errorf("processes left: %q", p)
			}
			return nil
		})
		lines, err := readLog(containerStatus(t, rt, id).GetStatus().GetLogPath())
		if err != nil || len(lines) == 0 || lines[len(lines)-1].msg != lastLine {
			t.Errorf("log of %s: %v, %v; want it to end with %q", id, lines, err, lastLine)
		}
	}

	done := startContainer(t, rt, sb, cfg, busybox("done", "seq 1 2000; echo bye; exit 3"))
	released(done, 3, "bye")

	stopped := startContainer(t, rt, sb, cfg, busybox("stopped", "trap 'echo term; exit 0' TERM; echo up; while true; do sleep 0.1; done"))
	eventually(t, 10*time.Second, "the trap is set", func() error {
		if lines, _ := readLog(containerStatus(t, rt, stopped).GetStatus().GetLogPath()); len(lines) == 0 {
			return errors.New("no output yet")
		}
		return nil
	})
	if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: stopped, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if ts := e.taskStatus(stopped); ts != "" {
		t.Errorf("StopContainer returned with the task still there, %s", ts)
	}
	released(stopped, 0, "term")

	// Exiting while peapod is down: recorded and released at start-up.
	late := startContainer(t, rt, sb, cfg, busybox("late", "sleep 2; echo late"))
	e.d.signal(syscall.SIGKILL)
	e.d.wait(podTimeout)
	eventually(t, 20*time.Second, "the container exits while peapod is down", func() error {
		if ts := e.taskStatus(late); ts != "stopped" {
			return fmt.Errorf("task is %q", ts)
		}
		return nil
	})
	rt, _ = e.serve()
	released(late, 0, "late")

	for _, id := range []string{done, stopped, late} {
		if _, err := rt.RemoveContainer(podCtx(t), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("RemoveContainer(%s): %v", id, err)
		}
	}
}

// Where the pause image cannot be pulled, pods run on peapod's built-in
// pause image, made of the small static peapod-io: a pod starts, its pause
// process is small, reaps the zombies orphaned to it, and stops at once on
// SIGTERM.
func TestBuiltinPause(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	e.pauseImage = "registry.k8s.io/pause:no-such-tag" // the mirror has no such tag
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("builtin-pause")
	cfg.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}}
	sb := runPod(t, rt, cfg)

	ctx, cancel := e.ctrdCtx()
	defer cancel()
	ctr, err := containerdClient(t).LoadContainer(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ctr.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.Image, "peapod.local/pause:") {
		t.Fatalf("the pod's pause image is %q, want peapod's built-in one", info.Image)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", task.Pid()))
	var rssKB int
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rssKB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	t.Logf("built-in pause process: %d kB resident", rssKB)
	if rssKB == 0 || rssKB > 8<<10 {
		t.Errorf("built-in pause process uses %d kB resident, want a few MB at most", rssKB)
	}

	// Orphans are reparented to the pause process (PID 1 of the shared PID
	// namespace), which reaps them.
	c := startContainer(t, rt, sb, cfg, busybox("orphans", "sh -c 'sleep 0.2 &' ; sleep 1000"))
	eventually(t, 10*time.Second, "the orphaned sleep is reaped", func() error {
		out, _ := execSync(t, rt, c, "ps", "-o", "pid,stat,comm")
		if strings.Contains(out, " Z ") || strings.Contains(out, "defunct") {
			return fmt.Errorf("zombies in the pod:\n%s", out)
		}
		if strings.Count(out, "sleep") != 1 {
			return fmt.Errorf("the orphan still runs:\n%s", out)
		}
		return nil
	})

	begin := time.Now()
	if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: sb}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("StopPodSandbox took %s: the pause process did not end on SIGTERM", d)
	}
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sb}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
}

// A container sees its own cgroup limits at /sys/fs/cgroup, read-only
// (writable when privileged), as programs that size themselves from them
// expect, and its image's /run rather than a tmpfs over it.
func TestContainerSeesItsCgroups(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("cgroups")
	sb := runPod(t, rt, cfg)

	limited := busybox("limited", "sleep 1000")
	limited.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 96 << 20, CpuQuota: 50000, CpuPeriod: 100000}
	c := startContainer(t, rt, sb, cfg, limited)
	unified := false
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		unified = true
	}
	memFile, cpuFile, wantMem, wantCPU := "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "100663296", "50000"
	if unified {
		memFile, cpuFile, wantCPU = "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cpu.max", "50000 100000"
	}
	for file, want := range map[string]string{memFile: wantMem, cpuFile: wantCPU} {
		if out, code := execSync(t, rt, c, "cat", file); code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("%s in the container: %q (exit %d), want %q", file, out, code, want)
		}
	}
	if out, code := sh(t, rt, c, "touch /sys/fs/cgroup/memory/x /sys/fs/cgroup/x 2>&1"); code == 0 {
		t.Errorf("the container could write to /sys/fs/cgroup: %q", out)
	}
	if out, _ := sh(t, rt, c, "awk '$2 == \"/run\"' /proc/mounts"); out != "" {
		t.Errorf("/run is a mount over the image's: %q", out)
	}

	pcfg := e.podConfig("cgroups-privileged")
	pcfg.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{Privileged: true}
	priv := busybox("privileged", "sleep 1000")
	priv.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{Privileged: true}
	pc := startContainer(t, rt, runPod(t, rt, pcfg), pcfg, priv)
	if out, code := sh(t, rt, pc, "awk '$2 ~ \"^/sys/fs/cgroup\" && $4 ~ \"^rw\"' /proc/mounts | head -1"); code != 0 || out == "" {
		t.Errorf("a privileged container's /sys/fs/cgroup is not writable: %q", out)
	}
}

// A container's environment: HOSTNAME is the pod's hostname, as docker and
// containerd's CRI set it, under the image's environment and the
// container's own, which may set it otherwise.
func TestContainerEnvironment(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("env")
	sb := runPod(t, rt, cfg)
	plain := startContainer(t, rt, sb, cfg, busybox("plain", "sleep 1000"))
	custom := busybox("custom", "sleep 1000")
	custom.Envs = []*runtime.KeyValue{{Key: "HOSTNAME", Value: []byte("chosen")}, {Key: "GREETING", Value: []byte("hi")}}
	own := startContainer(t, rt, sb, cfg, custom)
	for id, want := range map[string]string{
		plain: "HOSTNAME=env-host|PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|",
		own:   "HOSTNAME=chosen|PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|GREETING=hi",
	} {
		out, code := sh(t, rt, id, `echo "HOSTNAME=$HOSTNAME|PATH=$PATH|${GREETING:+GREETING=$GREETING}"`)
		if code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("environment of %s: %q (exit %d), want %q", id, strings.TrimSpace(out), code, want)
		}
	}
}

// On containerd 2.x a pod is in containerd's sandbox store while it lives,
// and its containers name it, so that their tasks join the pod's shim
// without a run of the shim binary each; across a peapod restart too. On
// 1.6, which has no sandbox store, pods work without. Nothing is left once
// the pod is removed.
func TestPodShimGroup(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("shimgroup")
	sb := runPod(t, rt, cfg)
	a := startContainer(t, rt, sb, cfg, busybox("a", "sleep 1000"))

	ctx, cancel := e.ctrdCtx()
	defer cancel()
	cc := containerdClient(t)
	v, err := cc.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	grouped := !strings.HasPrefix(v.Version, "1.")
	sandboxOf := func(id string) string {
		t.Helper()
		ctr, err := cc.LoadContainer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		info, err := ctr.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.SandboxID
	}
	want, wantRecords := "", []string(nil)
	if grouped {
		want, wantRecords = sb, []string{sb}
	}
	if got := e.sandboxStoreRecords(); !slices.Equal(got, wantRecords) {
		t.Errorf("containerd %s: sandbox store holds %q, want %q", v.Version, got, wantRecords)
	}
	if got := sandboxOf(a); got != want {
		t.Errorf("containerd %s: container's sandbox is %q, want %q", v.Version, got, want)
	}

	e.d.signal(syscall.SIGKILL)
	e.d.wait(podTimeout)
	rt, _ = e.serve()
	b := startContainer(t, rt, sb, cfg, busybox("b", "sleep 1000"))
	if got := sandboxOf(b); got != want {
		t.Errorf("after a restart, the container's sandbox is %q, want %q", got, want)
	}
	if out, code := execSync(t, rt, b, "echo", "ok"); code != 0 || out != "ok\n" {
		t.Errorf("exec in the container started after the restart: %q, %d", out, code)
	}

	if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: sb}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sb}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	eventually(t, 10*time.Second, "nothing of the pod is left", func() error { return e.leftovers(sb, a, b) })
}

// A pod whose pause process dies becomes not ready, and forgets the pause
// PID: another process may soon have it, and the pod's network counters
// must not be read from it.
func TestPauseExitMakesPodNotReady(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, _ := e.serve()
	cfg := e.podConfig("pause-dies")
	sbID := runPod(t, rt, cfg)
	pid := infoPid(t, sandboxStatus(t, rt, sbID).Info)
	if pid <= 0 {
		t.Fatalf("pause pid %d", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	eventually(t, 10*time.Second, "the pod is not ready", func() error {
		if st := sandboxStatus(t, rt, sbID).Status.State; st != runtime.PodSandboxState_SANDBOX_NOTREADY {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
	if pid := infoPid(t, sandboxStatus(t, rt, sbID).Info); pid != 0 {
		t.Errorf("verbose status of a pod whose pause exited names pid %d, want none", pid)
	}
	stats, err := rt.PodSandboxStats(callCtx(t), &runtime.PodSandboxStatsRequest{PodSandboxId: sbID})
	if err != nil {
		t.Fatalf("PodSandboxStats: %v", err)
	}
	if n := stats.GetStats().GetLinux().GetNetwork(); n != nil {
		t.Errorf("network stats of a pod without its pause process: %v", n)
	}
	if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	eventually(t, 10*time.Second, "nothing of the pod is left", func() error { return e.leftovers(sbID) })
}

// A container killed by the OOM killer is reported OOMKilled (exit 137),
// whether the OOM event or the exit reaches peapod first, and still after a
// restart of peapod.
func TestOOMKilled(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("oom")
	sb := runPod(t, rt, cfg)
	hog := busybox("hog", "echo start; exec dd if=/dev/zero of=/dev/null bs=64M count=1")
	hog.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 16 << 20, MemorySwapLimitInBytes: 16 << 20}
	id := startContainer(t, rt, sb, cfg, hog)
	oomKilled := func(rt runtime.RuntimeServiceClient) error {
		st := containerStatus(t, rt, id).GetStatus()
		if st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 137 || st.GetReason() != "OOMKilled" {
			return fmt.Errorf("state %s, exit %d, reason %q; want EXITED, 137, OOMKilled", st.GetState(), st.GetExitCode(), st.GetReason())
		}
		return nil
	}
	eventually(t, 20*time.Second, "the hog is OOM-killed", func() error { return oomKilled(rt) })

	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	rt, _ = e.serve()
	if err := oomKilled(rt); err != nil {
		t.Errorf("after a restart of peapod: %v", err)
	}
}

// The node's IO server, which writes every container's log, runs in a
// cgroup of its own, not in peapod's, so stopping peapod's cgroup does not
// end it. Killed, it is started again within seconds, takes up every
// container, and loses none of the output written meanwhile (it waits in
// the fifos); removed containers leave no registration with it.
func TestIOServerRestartLosesNoOutput(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("io-server")
	sbID := runPod(t, rt, cfg)
	counter := startContainer(t, rt, sbID, cfg, busybox("counter", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.02; done"))
	reader := busybox("reader", "echo up; exec cat")
	reader.Stdin = true
	readerID := startContainer(t, rt, sbID, cfg, reader)

	server := ioServerPid(t, e.state())
	cgroups := func(pid int) map[string]string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.SplitN(line, ":", 3)
			out[f[1]] = f[2]
		}
		return out
	}
	io, peapod := cgroups(server), cgroups(e.d.cmd.Process.Pid)
	for ctrl, p := range io {
		if strings.Contains(ctrl, "cpuset") {
			continue
		}
		if p != "/peapod-io" || p == peapod[ctrl] {
			t.Errorf("the IO server's cgroup in %q: %s (peapod's %s), want /peapod-io", ctrl, p, peapod[ctrl])
		}
	}

	logPath := containerStatus(t, rt, counter).GetStatus().GetLogPath()
	counted := func() int {
		lines, err := readLog(logPath)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range lines {
			if want := fmt.Sprintf("line-%d", i); l.msg != want || l.stream != "stdout" || l.tag != "F" {
				t.Fatalf("log line %d is %+v, want %q: output was lost or mangled", i, l, want)
			}
		}
		return len(lines)
	}
	eventually(t, 10*time.Second, "the counter's first lines", func() error {
		if n := counted(); n < 10 {
			return fmt.Errorf("%d lines", n)
		}
		return nil
	})
	if err := syscall.Kill(server, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	before := counted()
	eventually(t, 15*time.Second, "a new IO server", func() error {
		if pid := ioServerPid(t, e.state()); pid == server {
			return fmt.Errorf("still pid %d", pid)
		}
		return nil
	})
	eventually(t, 10*time.Second, "the counter's lines after the restart", func() error {
		if n := counted(); n < before+50 {
			return fmt.Errorf("%d lines, %d before the kill", n, before)
		}
		return nil
	})

	for _, id := range []string{counter, readerID} {
		if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.RemoveContainer(podCtx(t), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if regs, _ := os.ReadDir(filepath.Join(e.state(), "io", "containers")); len(regs) != 0 {
		t.Errorf("registrations left with the IO server after the containers' removal: %v", regs)
	}
}

// A container is reported exited only once its last output is in its log,
// a last line without a newline included (as partial, 'P'): the kubelet
// reads a failed container's last log lines for its termination message
// (FallbackToLogsOnError) as soon as it sees the exit.
func TestExitReportedAfterItsLastOutput(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("last-words")
	sb := runPod(t, rt, cfg)
	for i := range 8 {
		id := startContainer(t, rt, sb, cfg, busybox(fmt.Sprintf("dying%d", i), fmt.Sprintf("printf DONE-%d; exit 1", i)))
		var st *runtime.ContainerStatus
		deadline := time.Now().Add(20 * time.Second)
		for {
			st = containerStatus(t, rt, id).GetStatus()
			if st.GetState() == runtime.ContainerState_CONTAINER_EXITED || time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if st.GetState() != runtime.ContainerState_CONTAINER_EXITED {
			t.Errorf("container %d (printf; exit 1) is %s after 20 s, want EXITED", i, st.GetState())
			continue
		}
		lines, err := readLog(st.GetLogPath())
		want := fmt.Sprintf("DONE-%d", i)
		if err != nil || len(lines) == 0 || lines[len(lines)-1].msg != want || lines[len(lines)-1].tag != "P" {
			t.Errorf("container %d reported exited with its log %v (%v); want it to end with %s, partial", i, lines, err, want)
		}
	}
}
