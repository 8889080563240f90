//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerdBinEnv names the containerd binary the chaos test runs a
// containerd of its own with (the lab's 2.4.2, or Debian's 1.6.20): it
// restarts that one, never the containerd other tests share.
const containerdBinEnv = "PEAPOD_TEST_CONTAINERD_BIN"

// Chaos, as the issue sets it: 4 clients run 200 pod lifecycles (run,
// create, start, exec, stop, remove) while peapod is SIGKILLed at random
// every few seconds and restarted, and containerd is restarted twice. Every
// third kill takes the IO server too (peapod starts another).
const (
	chaosClients    = 4
	chaosLifecycles = 200
)

// TestChaos: every pod and container a client was told exists is listed
// with the right state, every exit code is right, and once the clients are
// done nothing is left: no containerd container, snapshot or lease, no
// netns, IP, hostPort rule, CNI result, process or file.
//
// What the test allows, and why (each is how a real peapod or containerd
// restart behaves, not a defect):
//   - A call that peapod did not answer (Unavailable: peapod is down or
//     still recovering; a call cut off by peapod's death) is made again,
//     as the kubelet does at its next sync; every step must be answered
//     within chaosAnswerWithin.
//   - A retried RunPodSandbox or CreateContainer may answer AlreadyExists
//     (the first call made it before peapod died): the pod or container is
//     then found by its name.
//   - A container that exits while containerd restarts may be reported
//     with exit code 255: containerd 2.x drops the exit status of a task
//     that ended while it was down when it reloads its shims, and its own
//     CRI reports 255 then too.
func TestChaos(t *testing.T) {
	t.Parallel()
	ctrd := startPrivateContainerd(t)
	e := newPodEnv(t)
	e.containerd = ctrd.sock
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	pull(t, ic, pause310)

	var (
		done       atomic.Int32 // lifecycles completed
		kills      atomic.Int32
		ioKills    atomic.Int32
		ctrdDowns  atomic.Int32
		ctrdEpoch  atomic.Int32 // odd while containerd restarts
		mu         sync.Mutex
		sandboxes  []string
		containers []string
	)
	stop := make(chan struct{})
	killerDone := make(chan struct{})
	go func() { // the chaos: peapod killed every 1-4 s, containerd restarted twice
		defer close(killerDone)
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		watcher := newChaosClient(t, e.socket)
		defer watcher.conn.Close()
		for {
			// Three countdowns in four start once peapod has recovered,
			// so that on a loaded machine, where peapod's start and
			// recovery take seconds, a step is not cut short for ever;
			// the others may cut peapod's start-up and recovery short.
			if kills.Load()%4 != 3 {
				if err := watcher.recovered(); err != nil {
					t.Errorf("peapod did not recover after its restart: %v", err)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Second + time.Duration(r.IntN(3000))*time.Millisecond):
			}
			if n := int(ctrdDowns.Load()); n < 2 && int(done.Load()) >= (n+1)*chaosLifecycles/3 {
				ctrdDowns.Add(1)
				t.Logf("restarting containerd (%d lifecycles done)", done.Load())
				ctrdEpoch.Add(1)
				ctrd.restart()
				ctrdEpoch.Add(1)
				continue
			}
			e.d.signal(syscall.SIGKILL)
			e.d.wait(10 * time.Second)
			if kills.Add(1)%3 == 0 {
				if pid := ioServerPid(t, e.state()); pid > 0 && syscall.Kill(pid, syscall.SIGKILL) == nil {
					ioKills.Add(1)
				}
			}
			e.start()
		}
	}()

	var wg sync.WaitGroup
	var failures atomic.Int32
	per := chaosLifecycles / chaosClients
	for c := range chaosClients {
		wg.Go(func() {
			cl := newChaosClient(t, e.socket)
			defer cl.conn.Close()
			for i := range per {
				name := fmt.Sprintf("chaos-%d-%d", c, i)
				sb, ctr, err := cl.lifecycle(e, name, ctrdEpoch.Load)
				mu.Lock()
				sandboxes, containers = append(sandboxes, sb), append(containers, ctr)
				mu.Unlock()
				if err != nil {
					t.Errorf("client %d, lifecycle %d: %v", c, i, err)
					if failures.Add(1) > 5 {
						return
					}
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-killerDone
	t.Logf("chaos: %d of %d lifecycles completed by %d clients, peapod SIGKILLed %d times (the IO server with it %d times), containerd restarted %d times; the slowest step, %s, was answered in %s",
		done.Load(), chaosLifecycles, chaosClients, kills.Load(), ioKills.Load(), ctrdDowns.Load(), slowest.step, slowest.d.Round(time.Millisecond))
	if ctrdDowns.Load() < 2 && done.Load() == chaosLifecycles {
		t.Errorf("containerd was restarted %d times, want 2", ctrdDowns.Load())
	}

	// A last, clean restart: what start-up recovery must leave.
	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	rt, _ = e.serve()
	if list, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{}); err != nil || len(list.Items) != 0 {
		t.Errorf("pods left: %v, %v", list.GetItems(), err)
	}
	var leaks []error
	eventually(t, 30*time.Second, "nothing of any pod is left", func() error {
		leaks = nil
		for i, sb := range sandboxes {
			if sb == "" {
				continue
			}
			if err := e.leftovers(sb, containers[i]); err != nil {
				leaks = append(leaks, err)
			}
		}
		if err := e.leftovers(""); err != nil {
			leaks = append(leaks, err)
		}
		if ls := e.leases(); len(ls) != 0 {
			leaks = append(leaks, fmt.Errorf("containerd leases: %q", ls))
		}
		return errors.Join(leaks...)
	})
	// Shims containerd lost (a create cut short, containerd restarted
	// while one started) are invisible to containerd: look at the
	// processes. The reaper ends one at its second sighting, 20 s apart.
	var shims []string
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		if shims = shimsOf(e.ns, ctrd.sock); len(shims) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(shims) > 0 {
		t.Errorf("shim processes of the namespace left after 90s: %q", shims)
		for _, sh := range shims {
			pid, _, _ := strings.Cut(sh, " ")
			cwd, _ := os.Readlink("/proc/" + pid + "/cwd")
			children, _ := os.ReadFile("/proc/" + pid + "/task/" + pid + "/children")
			t.Logf("shim %s: cwd %q, children %q", pid, cwd, children)
		}
		leaks = append(leaks, fmt.Errorf("shims: %q", shims))
	}
	t.Logf("leaks: %d (shims containerd lost, ended by the last peapod: %d)", len(leaks),
		strings.Count(e.d.stderr.String(), "Ended a shim containerd lost"))
	if len(leaks) > 0 {
		// What containerd did with what leaked.
		ids := regexp.MustCompile(`[0-9a-f]{64}`).FindAllString(errors.Join(leaks...).Error(), -1)
		b, _ := os.ReadFile(filepath.Join(ctrd.dir, "containerd.log"))
		for _, line := range strings.Split(string(b), "\n") {
			for _, id := range ids {
				if strings.Contains(line, id[:12]) {
					t.Logf("containerd: %s", line)
					break
				}
			}
		}
	}
}

// shimsOf lists the shim processes of containerd namespace ns on the
// containerd at address.
func shimsOf(ns, address string) []string {
	var out []string
	for _, p := range processesOf("-namespace\x00" + ns + "\x00") {
		// "PID (argv0 args…)"
		_, cmd, _ := strings.Cut(p, "(")
		argv0, _, _ := strings.Cut(cmd, " ")
		if strings.HasPrefix(filepath.Base(argv0), "containerd-shim") && strings.Contains(p, " -address "+address) {
			out = append(out, p)
		}
	}
	return out
}

// chaosClient is one CRI client of the chaos, with a short reconnect
// backoff: peapod is away often and briefly.
type chaosClient struct {
	t    *testing.T
	conn *grpc.ClientConn
	rt   runtime.RuntimeServiceClient
}

func newChaosClient(t *testing.T, socket string) *chaosClient {
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.5, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	return &chaosClient{t: t, conn: conn, rt: runtime.NewRuntimeServiceClient(conn)}
}

// chaosAnswerWithin bounds the time a chaos step may go unanswered: peapod
// is away for a moment after each kill (its recovery takes well under a
// second, a few on a loaded machine), and a restart of containerd takes a
// few seconds, during which peapod answers Unavailable; a step (RunPodSandbox
// takes 1-3 s on a loaded machine) may be cut short by several kills in a
// row. A step unanswered for longer hangs.
const chaosAnswerWithin = 60 * time.Second

// recovered waits until peapod has recovered its state: a List call, which
// waits for recovery, answers.
func (cl *chaosClient) recovered() error {
	_, err := do("ListPodSandbox (recovered)", func(ctx context.Context) (*runtime.ListPodSandboxResponse, error) {
		return cl.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	})
	return err
}

// slowest is the longest any chaos step took to be answered, for the log.
var slowest struct {
	sync.Mutex
	step string
	d    time.Duration
}

// do calls fn until it gets an answer from a peapod that was up for the
// whole call: Unavailable (peapod down, or recovering) and a cut-off call
// are tried again. The answer must come within chaosAnswerWithin of the
// first call: every try's deadline is that one.
func do[T any](what string, fn func(ctx context.Context) (T, error)) (T, error) {
	begin := time.Now()
	defer func() {
		slowest.Lock()
		if d := time.Since(begin); d > slowest.d {
			slowest.step, slowest.d = what, d
		}
		slowest.Unlock()
	}()
	ctx, cancel := context.WithDeadline(context.Background(), begin.Add(chaosAnswerWithin))
	defer cancel()
	for {
		v, err := fn(ctx)
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			if ctx.Err() != nil {
				return v, fmt.Errorf("%s: no answer in %s: %w", what, chaosAnswerWithin, err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		return v, err
	}
}

// lifecycle runs one pod through its life, each step tried again across
// peapod's deaths, as the kubelet would; it returns the IDs of the pod and
// its container (as far as they came to be).
//
// ctrdEpoch counts containerd's restarts twice, as they begin and as they
// end: a container that exits while containerd restarts may lose its exit
// code (containerd 2.x discards the state of a task that exited when it
// reloads its shims), and is then 255, as containerd's own CRI reports it
// too.
func (cl *chaosClient) lifecycle(e *podEnv, name string, ctrdEpoch func() int32) (sbID, ctrID string, _ error) {
	rt := cl.rt
	cfg := e.podConfig(name)
	cfg.Labels["chaos"] = name
	cfg.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 80, HostPort: int32(freePort(cl.t))}}

	// RunPodSandbox: a call cut short may have made the pod: its retry
	// answers AlreadyExists, and the pod is found by its label.
	_, err := do("RunPodSandbox", func(ctx context.Context) (string, error) {
		resp, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if status.Code(err) == codes.AlreadyExists {
			err = nil
		} else if err == nil {
			sbID = resp.PodSandboxId
		}
		return "", err
	})
	if err != nil {
		return "", "", err
	}
	if sbID == "" {
		if sbID, err = cl.findPod(name); err != nil {
			return "", "", err
		}
	}

	ctrCfg := busybox("app", "trap 'exit 7' TERM; echo up; while true; do sleep 0.1; done")
	_, err = do("CreateContainer", func(ctx context.Context) (string, error) {
		resp, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sbID, Config: ctrCfg, SandboxConfig: cfg})
		if status.Code(err) == codes.AlreadyExists {
			err = nil
		} else if err == nil {
			ctrID = resp.ContainerId
		}
		return "", err
	})
	if err != nil {
		return sbID, "", err
	}
	if ctrID == "" {
		list, err := do("ListContainers", func(ctx context.Context) (*runtime.ListContainersResponse, error) {
			return rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: sbID}})
		})
		if err != nil || len(list.GetContainers()) != 1 {
			return sbID, "", fmt.Errorf("finding the container created before a crash: %v, %v", list.GetContainers(), err)
		}
		ctrID = list.Containers[0].Id
	}

	// StartContainer: a start cut short is finished by recovery: the retry
	// then finds it running.
	_, err = do("StartContainer", func(ctx context.Context) (any, error) {
		_, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctrID})
		if status.Code(err) == codes.FailedPrecondition {
			st, serr := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctrID})
			if serr != nil {
				return nil, serr
			}
			if st.GetStatus().GetState() == runtime.ContainerState_CONTAINER_RUNNING {
				return nil, nil
			}
		}
		return nil, err
	})
	if err != nil {
		return sbID, ctrID, err
	}

	// What the client was told exists is listed, in the right state.
	if err := cl.listed(sbID, ctrID); err != nil {
		return sbID, ctrID, err
	}
	out, err := do("ExecSync", func(ctx context.Context) (*runtime.ExecSyncResponse, error) {
		return rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"echo", name}, Timeout: 10})
	})
	if err != nil || out.GetExitCode() != 0 || strings.TrimSpace(string(out.GetStdout())) != name {
		return sbID, ctrID, fmt.Errorf("exec: %q, exit %d, %v", out.GetStdout(), out.GetExitCode(), err)
	}

	epochBefore := ctrdEpoch()
	if _, err := do("StopContainer", func(ctx context.Context) (any, error) {
		_, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: ctrID, Timeout: 5})
		return nil, err
	}); err != nil {
		return sbID, ctrID, err
	}
	st, err := do("ContainerStatus", func(ctx context.Context) (*runtime.ContainerStatusResponse, error) {
		return rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctrID})
	})
	if err != nil {
		return sbID, ctrID, err
	}
	if s := st.GetStatus(); s.GetState() == runtime.ContainerState_CONTAINER_EXITED && s.GetExitCode() == 255 && (ctrdEpoch() != epochBefore || epochBefore%2 == 1) {
		cl.t.Logf("%s: exit code lost across a restart of containerd (255)", name)
	} else if s.GetState() != runtime.ContainerState_CONTAINER_EXITED || s.GetExitCode() != 7 {
		return sbID, ctrID, fmt.Errorf("stopped container: %s, exit %d; want EXITED, 7 (its TERM trap)", s.GetState(), s.GetExitCode())
	}
	// Its output reached its log, whoever was killed meanwhile.
	if lines, err := readLog(st.GetStatus().GetLogPath()); err != nil || len(lines) == 0 || lines[0].msg != "up" {
		return sbID, ctrID, fmt.Errorf("the stopped container's log: %v, %v; want its \"up\"", lines, err)
	}

	for _, step := range []func(ctx context.Context) error{
		func(ctx context.Context) error {
			_, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: sbID})
			return err
		},
		func(ctx context.Context) error {
			_, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sbID})
			return err
		},
	} {
		if _, err := do("Stop/RemovePodSandbox", func(ctx context.Context) (any, error) { return nil, step(ctx) }); err != nil {
			return sbID, ctrID, err
		}
	}
	if _, err := do("PodSandboxStatus", func(ctx context.Context) (any, error) {
		_, err := rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: sbID})
		if status.Code(err) == codes.NotFound {
			return nil, nil
		}
		if err == nil {
			err = errors.New("the removed pod is still there")
		}
		return nil, err
	}); err != nil {
		return sbID, ctrID, err
	}
	return sbID, ctrID, nil
}

func (cl *chaosClient) findPod(name string) (string, error) {
	list, err := do("ListPodSandbox", func(ctx context.Context) (*runtime.ListPodSandboxResponse, error) {
		return cl.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{LabelSelector: map[string]string{"chaos": name}}})
	})
	if err != nil || len(list.GetItems()) != 1 {
		return "", fmt.Errorf("finding pod %s made before a crash: %v, %v", name, list.GetItems(), err)
	}
	return list.Items[0].Id, nil
}

// listed checks that the pod is listed ready and its container running.
func (cl *chaosClient) listed(sbID, ctrID string) error {
	pods, err := do("ListPodSandbox", func(ctx context.Context) (*runtime.ListPodSandboxResponse, error) {
		return cl.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{Id: sbID}})
	})
	if err != nil || len(pods.GetItems()) != 1 || pods.Items[0].State != runtime.PodSandboxState_SANDBOX_READY {
		return fmt.Errorf("pod %s listed as %v (%v), want ready", sbID, pods.GetItems(), err)
	}
	ctrs, err := do("ListContainers", func(ctx context.Context) (*runtime.ListContainersResponse, error) {
		return cl.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: ctrID}})
	})
	if err != nil || len(ctrs.GetContainers()) != 1 || ctrs.Containers[0].State != runtime.ContainerState_CONTAINER_RUNNING {
		return fmt.Errorf("container %s listed as %v (%v), want running", ctrID, ctrs.GetContainers(), err)
	}
	return nil
}

// leases lists every containerd lease in the env's namespace.
func (e *podEnv) leases() []string {
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	ls, err := e.ctrd().LeasesService().List(ctx)
	if err != nil {
		e.t.Fatalf("listing leases: %v", err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, fmt.Sprintf("%s %v", l.ID, l.Labels))
	}
	return out
}

// privateContainerd is a containerd of the test's own, which it restarts.
type privateContainerd struct {
	t      *testing.T
	bin    string
	dir    string
	sock   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startPrivateContainerd runs the containerd of PEAPOD_TEST_CONTAINERD_BIN
// with a root, state and sockets of its own and no CRI plugin; it stops
// (and its shims are ended) when the test ends.
func startPrivateContainerd(t *testing.T) *privateContainerd {
	t.Helper()
	bin := os.Getenv(containerdBinEnv)
	if bin == "" {
		t.Fatalf("%s is not set: set it to a containerd binary (the Makefile's integration target does)", containerdBinEnv)
	}
	dir := tempDir(t)
	c := &privateContainerd{t: t, bin: bin, dir: dir, sock: filepath.Join(dir, "c.sock")}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.nri.v1.nri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start()
	t.Cleanup(c.stop)
	return c
}

func (c *privateContainerd) start() {
	c.t.Helper()
	log, err := os.OpenFile(filepath.Join(c.dir, "containerd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "--config", filepath.Join(c.dir, "config.toml"))
	// The shim (and the runc it runs) beside the binary come first.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.bin)+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting %s: %v", c.bin, err)
	}
	log.Close()
	c.cmd, c.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(c.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(c.sock); err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("containerd %s did not come up on %s", c.bin, c.sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restart stops containerd (SIGTERM: its shims, and the containers, go on)
// and starts it again.
func (c *privateContainerd) restart() {
	c.t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	os.Remove(c.sock)
	c.start()
}

func (c *privateContainerd) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

// A restart of containerd loses no task: a pod's containers keep running,
// peapod follows their exits again and keeps reporting them running, and a
// stop after it records the container's own exit code.
func TestContainerdRestartKeepsTasks(t *testing.T) {
	t.Parallel()
	ctrd, e, rt, id := privateContainer(t, "survivor", "trap 'exit 7' TERM; while true; do sleep 0.1; done")
	// A witness, killed once containerd is back: peapod sees its exit once
	// it has subscribed to containerd's events again, or in the resync that
	// follows each subscription. Then what it reports of the survivor is
	// what that resync found.
	pods, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{})
	if err != nil || len(pods.GetItems()) != 1 {
		t.Fatalf("ListPodSandbox = %v, %v; want the survivor's pod", pods.GetItems(), err)
	}
	witness := startContainer(t, rt, pods.Items[0].Id, e.podConfig("survivor"), busybox("witness", "while true; do sleep 0.1; done"))
	witnessPid := e.taskPid(witness)
	ctrd.restart()
	if err := syscall.Kill(int(witnessPid), syscall.SIGKILL); err != nil {
		t.Fatalf("killing the witness (pid %d): %v", witnessPid, err)
	}
	killed := time.Now()
	eventually(t, 30*time.Second, "peapod follows containerd's events again: the witness's exit is seen", func() error {
		if st := containerStatus(t, rt, witness).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 137 {
			return fmt.Errorf("witness %s, exit %d; want EXITED, 137", st.GetState(), st.GetExitCode())
		}
		return nil
	})
	t.Logf("the witness's exit was seen %s after its kill", time.Since(killed).Round(time.Millisecond))
	if ts := e.taskStatus(id); ts != "running" {
		t.Errorf("the container's task after containerd's restart: %q, want running", ts)
	}
	if st := containerStatus(t, rt, id).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container after containerd's restart: %s, exit %d, want RUNNING", st.GetState(), st.GetExitCode())
	}
	if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if st := containerStatus(t, rt, id).GetStatus(); st.GetExitCode() != 7 {
		t.Errorf("exit code %d, want 7 (its TERM trap)", st.GetExitCode())
	}
	if t.Failed() {
		b, _ := os.ReadFile(filepath.Join(ctrd.dir, "containerd.log"))
		t.Logf("containerd log:\n%s", tail(string(b), 6000))
	}
}

// Containers whose stop a restart of containerd cuts short: each stop is
// Unavailable (the kubelet calls it again), and each exit is recorded with
// the container's own code, whether it came while containerd was down or
// once it was back. But for one thing containerd 2.x does: starting, it
// takes the shim of a task whose process has exited for a leaked one and
// reaps it ("cleaning leaked shim process"), exit status and all, so an
// exit while it was down is reported 255, as its own CRI reports it
// (containerd 1.6 keeps the status).
func TestExitDuringContainerdRestart(t *testing.T) {
	t.Parallel()
	// Each container's TERM trap (set when it says it is ready) says it
	// runs, then waits for leave to exit 7: the test chooses whether
	// containerd is down or up then.
	signals := tempDir(t)
	mount := &runtime.Mount{HostPath: signals, ContainerPath: "/signal"}
	trap := func(name string) string {
		return fmt.Sprintf("trap 'touch /signal/%[1]s-termed; until [ -e /signal/%[1]s-leave ]; do sleep 0.05; done; exit 7' TERM; touch /signal/%[1]s-ready; while true; do sleep 0.1; done", name)
	}
	ctrd, e, rt, late := privateContainer(t, "exit-in-restart", trap("late"), mount)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(ctrd.dir, "containerd.log"))
			t.Logf("containerd log:\n%s", tail(string(b), 8000))
		}
	})
	pods, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{})
	if err != nil || len(pods.GetItems()) != 1 {
		t.Fatalf("ListPodSandbox = %v, %v; want the test's pod", pods.GetItems(), err)
	}
	down := startContainer(t, rt, pods.Items[0].Id, e.podConfig("exit-in-restart"), busybox("down", trap("down"), mount))
	downPid := e.taskPid(down)
	version, err := e.ctrd().Version(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	downCode := int32(7)
	if !strings.HasPrefix(strings.TrimPrefix(version.Version, "v"), "1.") {
		downCode = 255
	}

	touched := func(name string) func() error {
		return func() error {
			_, err := os.Stat(filepath.Join(signals, name))
			return err
		}
	}
	eventually(t, 10*time.Second, "late's trap is set", touched("late-ready"))
	eventually(t, 10*time.Second, "down's trap is set", touched("down-ready"))

	stops := map[string]chan error{late: make(chan error, 1), down: make(chan error, 1)}
	for id, stopped := range stops {
		go func() {
			_, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: id, Timeout: 30})
			stopped <- err
		}()
	}
	eventually(t, 10*time.Second, "late's stop signal is trapped", touched("late-termed"))
	eventually(t, 10*time.Second, "down's stop signal is trapped", touched("down-termed"))

	ctrd.stop()
	if err := os.WriteFile(filepath.Join(signals, "down-leave"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "down exits while containerd is down", func() error {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", downPid)); err == nil {
			return fmt.Errorf("pid %d still runs", downPid)
		}
		return nil
	})
	os.Remove(ctrd.sock)
	ctrd.start()
	if err := os.WriteFile(filepath.Join(signals, "late-leave"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	for id, stopped := range stops {
		// The stop's wait broke with containerd's connection: it asks to
		// be called again.
		if err := <-stopped; status.Code(err) != codes.Unavailable {
			t.Errorf("StopContainer(%s) across containerd's restart: %v, want Unavailable", id, err)
		}
	}
	for id, want := range map[string]int32{late: 7, down: downCode} {
		eventually(t, 20*time.Second, "the exit of "+id+" is recorded", func() error {
			if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: id, Timeout: 30}); err != nil {
				return err
			}
			// The stop that succeeds has recorded the exit.
			st := containerStatus(t, rt, id).GetStatus()
			if st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != want {
				return fmt.Errorf("%s, exit %d; want EXITED, %d", st.GetState(), st.GetExitCode(), want)
			}
			return nil
		})
	}
}

// privateContainer runs, on a containerd of the test's own, a pod named
// name with one busybox container running script, and returns them.
func privateContainer(t *testing.T, name, script string, mounts ...*runtime.Mount) (*privateContainerd, *podEnv, runtime.RuntimeServiceClient, string) {
	t.Helper()
	ctrd := startPrivateContainerd(t)
	e := newPodEnv(t)
	e.containerd = ctrd.sock
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig(name)
	sbID := runPod(t, rt, cfg)
	return ctrd, e, rt, startContainer(t, rt, sbID, cfg, busybox("app", script, mounts...))
}
