//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// What a restart of containerd leaves of a task, and what peapod makes of
// it. Two defects that TestChaos met on containerd 1.6, each made here at
// will.

// A StartContainer that a restart of containerd cut short, while the task's
// shim was inside runc create, is done by the next StartContainer, at
// once. containerd 1.6 lists every shim it finds when it starts, whether
// or not its task was ever made: with the create failed, its shim holds no
// task, so that containerd answers a new create with "already exists"
// while Get finds no task. (peapod waited for the task to show, 13 s, then
// failed the start.)
func TestStartAfterContainerdRestartCutItShort(t *testing.T) {
	for _, tc := range []struct {
		name       string
		peapodDies bool // peapod is SIGKILLed (and restarted) in the start too
	}{
		{"containerd restarts", false},
		{"peapod dies, then containerd restarts", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			startAfterCutShort(t, tc.peapodDies)
		})
	}
}

func startAfterCutShort(t *testing.T, peapodDies bool) {
	ctrd := startPrivateContainerd(t)
	gate := newRuntimeGate(t) // before the env, whose clean-up runs the gated runtime
	e := newPodEnv(t)
	e.containerd = ctrd.sock
	e.config += gate.handler("gated")
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("cut-short")
	resp, err := rt.RunPodSandbox(podCtx(t), &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "gated"})
	if err != nil {
		t.Fatal(err)
	}
	sb := resp.PodSandboxId
	created, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: sb, Config: busybox("app", "echo up; sleep 3600"), SandboxConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	id := created.ContainerId

	// The first start: held inside runc create while containerd restarts,
	// then its create fails. (Let go on, it is killed all the same: the
	// shim runs runc in the context of containerd's request, which ends
	// with containerd's connection.)
	gate.arm("create")
	first := make(chan error, 1)
	go func() {
		_, err := rt.StartContainer(podCtx(t), &runtime.StartContainerRequest{ContainerId: id})
		first <- err
	}()
	gate.waitReached(t)
	if peapodDies {
		e.d.signal(syscall.SIGKILL)
		e.d.wait(10 * time.Second)
	}
	ctrd.restart()
	gate.release(true)
	if err := <-first; status.Code(err) != codes.Unavailable {
		t.Fatalf("StartContainer across containerd's restart = %v, want Unavailable", err)
	}
	if peapodDies {
		rt, _ = e.serve()
	}

	// The retry starts the container.
	begin := time.Now()
	if _, err := rt.StartContainer(podCtx(t), &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer after the one containerd's restart cut short: %v", err)
	}
	t.Logf("the retried StartContainer took %s", time.Since(begin))
	st := containerStatus(t, rt, id).GetStatus()
	if st.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after the retried start: %s (%s: %s)", st.GetState(), st.GetReason(), st.GetMessage())
	}
	wantFirstLine(t, st.GetLogPath(), "up")
	removePodOf(t, rt, sb)
	if err := e.leftovers(sb, id); err != nil {
		t.Error(err)
	}
	if shims := shimsOf(e.ns, ctrd.sock); len(shims) > 0 {
		t.Errorf("shims left: %q", shims)
	}
}

// A task left unstarted by a StartContainer that peapod's death cut short
// is not started by the next StartContainer, which makes a task of its
// own, as containerd's CRI does: whether the old task's output is still
// copied cannot be told. Here a delete of it by containerd (as containerd
// cleans up after a create whose caller went away) is cut off by
// containerd's restart while runc delete runs: the shim has closed the
// task's output pipes, and keeps the task, created. (peapod started that
// task, and its container died of SIGPIPE at its first write, exit 141:
// TestChaos met it on containerd 1.6.)
func TestStartAfterAnUnstartedTaskLostItsOutput(t *testing.T) {
	t.Parallel()
	ctrd := startPrivateContainerd(t)
	gate := newRuntimeGate(t) // before the env, whose clean-up runs the gated runtime
	e := newPodEnv(t)
	e.containerd = ctrd.sock
	e.config += gate.handler("gated")
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("lost-output")
	resp, err := rt.RunPodSandbox(podCtx(t), &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "gated"})
	if err != nil {
		t.Fatal(err)
	}
	sb := resp.PodSandboxId
	created, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: sb,
		Config: busybox("app", "trap 'exit 7' TERM; echo up; while true; do sleep 0.1; done"), SandboxConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	id := created.ContainerId

	// peapod dies between the task's create and its start.
	e.crashInStart(id, "container-start:after-task")

	// A delete of the unstarted task, cut off by containerd's restart
	// while runc delete runs.
	gate.arm("delete")
	deleted := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), e.ns), time.Minute)
		defer cancel()
		_, err := e.ctrd().TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id})
		deleted <- err
	}()
	gate.waitReached(t)
	ctrd.restart()
	gate.release(false)
	if err := <-deleted; err == nil {
		t.Fatal("the task's delete was not cut short by containerd's restart")
	}
	if ts := e.taskStatus(id); ts != "created" {
		t.Fatalf("the task after its cut-short delete is %q, want created: the test did not make the state it tests", ts)
	}
	lost := e.taskPid(id)

	rt, _ = e.serve()
	if _, err := rt.StartContainer(podCtx(t), &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if pid := e.taskPid(id); pid == lost {
		t.Errorf("the started task is the one whose output was lost (pid %d)", pid)
	}
	st := containerStatus(t, rt, id).GetStatus()
	wantFirstLine(t, st.GetLogPath(), "up")
	if st := containerStatus(t, rt, id).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after its start: %s, exit %d (%s)", st.GetState(), st.GetExitCode(), st.GetReason())
	}
	if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if st := containerStatus(t, rt, id).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 7 {
		t.Errorf("stopped container: %s, exit %d; want EXITED, 7 (its TERM trap)", st.GetState(), st.GetExitCode())
	}
	removePodOf(t, rt, sb)
	if err := e.leftovers(sb, id); err != nil {
		t.Error(err)
	}
	if shims := shimsOf(e.ns, ctrd.sock); len(shims) > 0 {
		t.Errorf("shims left: %q", shims)
	}
}

// A task containerd lost while its process runs is not taken for an exit:
// containerd 1.6's clean-up after an earlier task of the same ID, cut
// short, can unlist the ID late, while a new task of it runs. The loss is
// made here by hiding the task's bundle from a restarting containerd,
// which then no longer lists the task, and putting it back. The container
// is still reported running, a stop ends it and records its own exit, one
// that ends on its own is seen to, and nothing of either is left. (peapod
// recorded both exited, 255, and left their processes running.) One that
// ended while peapod was away has its own exit, which its shim kept
// (peapod recorded 255: TestChaos met it on 1.6, after containerd lost a
// task whose process a stop had just ended).
func TestTaskContainerdLost(t *testing.T) {
	t.Parallel()
	ctrd := startPrivateContainerd(t)
	e := newPodEnv(t)
	e.containerd = ctrd.sock
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("lost")
	sb := runPod(t, rt, cfg)
	quit := tempDir(t)
	stopped := startContainer(t, rt, sb, cfg, busybox("stopped", "trap 'exit 7' TERM; echo up; while true; do sleep 0.1; done"))
	exits := startContainer(t, rt, sb, cfg, busybox("exits",
		"echo up; while [ ! -e /quit/now ]; do sleep 0.1; done; exit 3",
		&runtime.Mount{ContainerPath: "/quit", HostPath: quit}))
	ended := startContainer(t, rt, sb, cfg, busybox("ended",
		"echo up; while [ ! -e /quit/early ]; do sleep 0.1; done; exit 5",
		&runtime.Mount{ContainerPath: "/quit", HostPath: quit}))
	pids := map[string]uint32{stopped: e.taskPid(stopped), exits: e.taskPid(exits), ended: e.taskPid(ended)}

	// containerd restarts without the tasks' bundles (and so without the
	// tasks), which are then put back, while peapod is away.
	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	tasksDir := filepath.Join(ctrd.dir, "state", "io.containerd.runtime.v2.task", e.ns)
	hidden := tempDir(t)
	for id := range pids {
		if err := os.Rename(filepath.Join(tasksDir, id), filepath.Join(hidden, id)); err != nil {
			t.Fatal(err)
		}
	}
	ctrd.restart()
	for id := range pids {
		if err := os.Rename(filepath.Join(hidden, id), filepath.Join(tasksDir, id)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := e.ctrdCtx()
		if _, err := e.ctrd().TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id}); status.Code(err) != codes.NotFound {
			t.Fatalf("containerd still has the task of %s (%v): the test did not make it lose it", id, err)
		}
		cancel()
	}
	// ended ends before peapod is back.
	if err := os.WriteFile(filepath.Join(quit, "early"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "ended's process ends", func() error {
		if s := processState(pids[ended]); s != "gone" {
			return fmt.Errorf("its process %d: %s", pids[ended], s)
		}
		return nil
	})
	rt, _ = e.serve()

	eventually(t, 10*time.Second, "the container that ended while peapod was away has its own exit", func() error {
		if st := containerStatus(t, rt, ended).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 5 {
			return fmt.Errorf("%s, exit %d; want EXITED, 5", st.GetState(), st.GetExitCode())
		}
		return nil
	})
	for _, id := range []string{stopped, exits} {
		pid := pids[id]
		if st := containerStatus(t, rt, id).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
			t.Errorf("container %s, whose task containerd lost, is %s (exit %d), want RUNNING: its process %d %s",
				id, st.GetState(), st.GetExitCode(), pid, processState(pid))
		}
	}

	if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: stopped, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if st := containerStatus(t, rt, stopped).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 7 {
		t.Errorf("stopped container: %s, exit %d; want EXITED, 7 (its TERM trap)", st.GetState(), st.GetExitCode())
	}
	if err := os.WriteFile(filepath.Join(quit, "now"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the container that ends on its own is seen to exit", func() error {
		if st := containerStatus(t, rt, exits).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 3 {
			return fmt.Errorf("%s, exit %d; want EXITED, 3", st.GetState(), st.GetExitCode())
		}
		return nil
	})
	for id, pid := range pids {
		if s := processState(pid); s != "gone" {
			t.Errorf("the process %d of exited container %s: %s", pid, id, s)
		}
		if _, err := os.Stat(filepath.Join(tasksDir, id)); !os.IsNotExist(err) {
			t.Errorf("the bundle of container %s's lost task is left (%v)", id, err)
		}
	}
	removePodOf(t, rt, sb)
	if err := e.leftovers(sb, stopped, exits, ended); err != nil {
		t.Error(err)
	}
	eventually(t, 10*time.Second, "no shim is left", func() error {
		if shims := shimsOf(e.ns, ctrd.sock); len(shims) > 0 {
			return fmt.Errorf("shims left: %q", shims)
		}
		return nil
	})
}

// processState says whether process pid runs: "gone", or its state.
func processState(pid uint32) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	if strings.HasPrefix(rest, "Z") {
		return "gone"
	}
	return "running (" + strings.Fields(rest)[0] + ")"
}

// removePodOf stops and removes pod sb.
func removePodOf(t *testing.T, rt runtime.RuntimeServiceClient, sb string) {
	t.Helper()
	if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: sb}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sb}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
}

// runtimeGate holds a runc command (create, delete), while armed for it,
// until it is released.
type runtimeGate struct {
	dir string
}

// newRuntimeGate makes an OCI runtime that is the lab's runc behind a
// gate: while the gate is armed for a command (create, or delete), each
// run of it waits, in its shim, until the test releases it, and then fails
// or goes on.
func newRuntimeGate(t *testing.T) *runtimeGate {
	t.Helper()
	runc := os.Getenv("PEAPOD_TEST_RUNC")
	if runc == "" {
		runc = "/usr/bin/runc"
	}
	g := &runtimeGate{dir: tempDir(t)}
	script := fmt.Sprintf(`#!/bin/sh
# The lab's runc, behind the test's gate.
verb=$(cat %[1]s/armed 2>/dev/null)
case " $* " in
*" ${verb:-none} "*)
	: >%[1]s/reached
	while [ -e %[1]s/armed ]; do sleep 0.05; done
	if [ -e %[1]s/fail ]; then
		echo "runc $verb failed by the test" >&2
		exit 1
	fi
	;;
esac
exec %[2]s "$@"
`, g.dir, runc)
	if err := os.WriteFile(filepath.Join(g.dir, "runc"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return g
}

// handler is the config of a runtime handler named name that runs the
// gated runtime.
func (g *runtimeGate) handler(name string) string {
	return fmt.Sprintf("\n[runtimes.%s]\nbinary = %q\n", name, filepath.Join(g.dir, "runc"))
}

// arm holds the next runs of runc's command verb (create, delete).
func (g *runtimeGate) arm(verb string) {
	os.Remove(filepath.Join(g.dir, "reached"))
	os.Remove(filepath.Join(g.dir, "fail"))
	os.WriteFile(filepath.Join(g.dir, "armed"), []byte(verb), 0o644)
}

func (g *runtimeGate) waitReached(t *testing.T) {
	t.Helper()
	eventually(t, 60*time.Second, "a runc command reaches the gate", func() error {
		_, err := os.Stat(filepath.Join(g.dir, "reached"))
		return err
	})
}

// release lets the held create go on, or fail.
func (g *runtimeGate) release(fail bool) {
	if fail {
		os.WriteFile(filepath.Join(g.dir, "fail"), nil, 0o644)
	}
	os.Remove(filepath.Join(g.dir, "armed"))
}

// A containerd that fails to answer while peapod recovers does not make a
// ready pod not ready: peapod asks again, and reports the pod as its pause
// is. (Recovery took any error from containerd for the pause's exit, and
// the kubelet tears down a pod reported not ready: TestChaos met it on a
// loaded machine.)
func TestRecoveryAsksContainerdAgain(t *testing.T) {
	t.Parallel()
	e, proxy, rt, _, sb := proxiedPod(t, "asks-again")

	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	const get = "/containerd.services.tasks.v1.Tasks/Get"
	proxy.failNext(get, 3)
	rt, _ = e.serve()
	list, err := rt.ListPodSandbox(podCtx(t), &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{Id: sb}})
	if err != nil {
		t.Fatal(err)
	}
	if n := proxy.failedCalls(get); n == 0 {
		t.Fatalf("recovery asked containerd for no task: the test failed nothing")
	}
	if len(list.GetItems()) != 1 || list.Items[0].State != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod after a recovery that containerd failed %d times: %v, want READY", proxy.failedCalls(get), list.GetItems())
	}

	// containerd 1.6 answers UNKNOWN for a task whose shim does not tell
	// its state in time: peapod recovers the others, keeps the pod as it
	// was, and asks again later.
	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	proxy.answerNext(get, 1000, &tasks.GetResponse{Process: &tasktypes.Process{ID: sb, Status: tasktypes.Status_UNKNOWN}})
	rt, _ = e.serve()
	if st := sandboxStatus(t, rt, sb).GetStatus(); st.GetState() != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod after a recovery that containerd could not tell its pause's state: %s, want READY", st.GetState())
	}
	proxy.answerNext(get, 0, &tasks.GetResponse{}) // containerd can tell again
	eventually(t, 20*time.Second, "peapod learns the pause's PID when containerd tells it", func() error {
		st := sandboxStatus(t, rt, sb)
		if pid := infoPid(t, st.GetInfo()); pid == 0 {
			return fmt.Errorf("no pid in the pod's verbose status")
		}
		return nil
	})
	removePodOf(t, rt, sb)
	if err := e.leftovers(sb); err != nil {
		t.Error(err)
	}
}

// tasksListedAs is containerd's task list with container id's task
// replaced by as, or left out when as is nil: what a proxy in front of
// containerd answers to make peapod see the task so.
func (e *podEnv) tasksListedAs(id string, as *tasktypes.Process) *tasks.ListTasksResponse {
	e.t.Helper()
	ctx, cancel := e.ctrdCtx()
	real, err := e.ctrd().TaskService().List(ctx, &tasks.ListTasksRequest{})
	cancel()
	if err != nil {
		e.t.Fatal(err)
	}
	listed := &tasks.ListTasksResponse{}
	found := false
	for _, p := range real.GetTasks() {
		switch {
		case p.GetID() != id:
			listed.Tasks = append(listed.Tasks, p)
		case as != nil:
			listed.Tasks, found = append(listed.Tasks, as), true
		default:
			found = true
		}
	}
	if !found {
		e.t.Fatalf("containerd lists no task of container %s: the test made nothing to change (%v)", id, real.GetTasks())
	}
	return listed
}

// proxiedPod serves a peapod whose calls to the lab's containerd go
// through a proxy the test controls, and runs pod name (busybox pulled).
func proxiedPod(t *testing.T, name string) (*podEnv, *ctrdProxy, runtime.RuntimeServiceClient, *runtime.PodSandboxConfig, string) {
	t.Helper()
	proxy := startCtrdProxy(t, containerdSock) // before the env, whose clean-up goes through it
	e := newPodEnv(t)
	e.containerd = proxy.sock
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig(name)
	return e, proxy, rt, cfg, runPod(t, rt, cfg)
}

// A container whose start peapod's death cut short, and whose task
// containerd 1.6 cannot tell the state of (UNKNOWN: its shim does not
// answer in time), is not taken for started: it stays created, a start
// meanwhile is Unavailable, and once containerd can tell, the start makes
// the container run. (Recovery adopted it as running, with no PID.)
func TestStartOfATaskContainerdCannotTell(t *testing.T) {
	t.Parallel()
	e, proxy, rt, cfg, sb := proxiedPod(t, "cannot-tell")
	created, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: sb,
		Config: busybox("app", "trap 'exit 7' TERM; echo up; while true; do sleep 0.1; done"), SandboxConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	id := created.ContainerId
	e.crashInStart(id, "container-start:after-task")

	// containerd answers as 1.6 does while the task's shim does not: the
	// list with the task UNKNOWN, and Get of it UNKNOWN.
	unknown := &tasktypes.Process{ID: id, Status: tasktypes.Status_UNKNOWN}
	listed := e.tasksListedAs(id, unknown)
	const list, get = "/containerd.services.tasks.v1.Tasks/List", "/containerd.services.tasks.v1.Tasks/Get"
	proxy.answerNext(list, 1000, listed)
	proxy.answerNext(get, 1000, &tasks.GetResponse{Process: unknown})
	rt, _ = e.serve()
	if st := containerStatus(t, rt, id).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_CREATED {
		t.Errorf("container whose task containerd cannot tell: %s, want CREATED", st.GetState())
	}
	_, err = rt.StartContainer(podCtx(t), &runtime.StartContainerRequest{ContainerId: id})
	wantCode(t, "StartContainer while containerd cannot tell the task's state", err, codes.Unavailable)

	proxy.answerNext(list, 0, listed) // containerd can tell again
	proxy.answerNext(get, 0, unknown)
	if _, err := rt.StartContainer(podCtx(t), &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer once containerd can tell: %v", err)
	}
	st := containerStatus(t, rt, id).GetStatus()
	if st.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after its start: %s", st.GetState())
	}
	wantFirstLine(t, st.GetLogPath(), "up")
	removePodOf(t, rt, sb)
	if err := e.leftovers(sb, id); err != nil {
		t.Error(err)
	}
}

// An exec whose start peapod asked for, then died: containerd passes the
// start on to the shim all the same, and the shim opens the exec's output
// fifos for writing before it runs the process, an open that waits for a
// reader, which died with peapod. It holds the exec's lock meanwhile, and
// on containerd 1.6 with it the whole shim: every State of the pod's tasks,
// so every task List and Get touching the pod, waited containerd's 2 s and
// answered UNKNOWN, until something happened to end the pod (TestChaos met
// it after many of the peapod deaths it made during an ExecSync on 1.6:
// recovery then took 2-12 s, and TestChaos twice as long as on 2.4). The
// next peapod reads what the dead one left, which lets the shim through,
// and ends that exec.
func TestExecStartLeftByADeadPeapod(t *testing.T) {
	t.Parallel()
	e, proxy, rt, cfg, sb := proxiedPod(t, "exec-left")
	id := startContainer(t, rt, sb, cfg, busybox("app", "echo up; while true; do sleep 0.1; done"))

	held, execDone := proxy.holdDuring(t, "/containerd.services.tasks.v1.Tasks/Start", "ExecSync", func() error {
		_, err := rt.ExecSync(podCtx(t), &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo left; sleep 300"}})
		return err
	})
	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	wantCode(t, "ExecSync as peapod dies", <-execDone, codes.Unavailable)
	held.pass()
	// The shim waits to open the exec's output, which no one reads.
	select {
	case err := <-held.answered:
		t.Fatalf("the exec's start was answered (%v) with no one to read its output: the test made nothing to settle", err)
	case <-time.After(2 * time.Second):
	}

	rt, _ = e.serve()
	e.recovered(rt)
	select {
	case err := <-held.answered:
		t.Logf("the start of the exec the dead peapod left was answered: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the start of the exec the dead peapod left is not answered 15 s after the next peapod recovered: its shim still waits for a reader of the exec's output")
	}
	// Recovery ended the exec, whether the start it let through ran it or
	// not, and removed its fifos.
	if st := e.taskStatus(id); st != "running" {
		t.Errorf("the container's task is %q, want running", st)
	}
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	if task := e.task(ctx, id); task == nil {
		t.Error("the container has no task")
	} else if pids, err := task.Pids(ctx); err != nil {
		t.Error(err)
	} else {
		for _, p := range pids {
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid)); strings.Contains(string(cmd), "sleep\x00300") {
				t.Errorf("the exec the dead peapod left still runs: %d %q", p.Pid, cmd)
			}
		}
	}
	if dirs := e.execFifoDirs(); len(dirs) > 0 {
		t.Errorf("the fifos of the exec the dead peapod left are still there: %q", dirs)
	}
	if out, code := execSync(t, rt, id, "echo", "again"); out != "again\n" || code != 0 {
		t.Errorf("an exec after recovery: %q, exit %d", out, code)
	}
	removePodOf(t, rt, sb)
	if err := e.leftovers(sb, id); err != nil {
		t.Error(err)
	}
}

// containerd 2.x leaves out of its task list a task whose shim does not
// tell its state within 2 s (1.6 lists it UNKNOWN), as a busy shim may
// not. A container whose process ended while peapod was away, left out of
// the list peapod's recovery reads, has its own exit, which its shim
// holds: peapod took the task for lost and recorded 255 (TestChaos met it
// on 2.4, at its busy start, with containerd up).
func TestTaskLeftOutOfContainerdsList(t *testing.T) {
	t.Parallel()
	e, proxy, rt, cfg, sb := proxiedPod(t, "left-out")
	quit := tempDir(t)
	id := startContainer(t, rt, sb, cfg, busybox("app", "echo up; while [ ! -e /quit/now ]; do sleep 0.1; done; exit 5",
		&runtime.Mount{ContainerPath: "/quit", HostPath: quit}))
	pid := e.taskPid(id)
	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	if err := os.WriteFile(filepath.Join(quit, "now"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the container's process ends", func() error {
		if s := processState(pid); s != "gone" {
			return fmt.Errorf("its process %d: %s", pid, s)
		}
		return nil
	})

	// containerd lists every task but the container's.
	listed := e.tasksListedAs(id, nil)
	const list = "/containerd.services.tasks.v1.Tasks/List"
	proxy.answerNext(list, 1000, listed)
	rt, _ = e.serve()
	eventually(t, 10*time.Second, "the container has its own exit", func() error {
		if st := containerStatus(t, rt, id).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 5 {
			return fmt.Errorf("%s, exit %d; want EXITED, 5", st.GetState(), st.GetExitCode())
		}
		return nil
	})
	proxy.answerNext(list, 0, listed) // containerd lists it again
	removePodOf(t, rt, sb)
	if err := e.leftovers(sb, id); err != nil {
		t.Error(err)
	}
}

// What StartContainer answered outlives a peapod that dies after the
// answer: the container's status was written before it. (It was written
// after: a peapod killed just then gave the container, when it adopted it,
// its process's start time, not the one the kubelet had been told:
// TestRestartKeepsPodsRunning met it in CI.) The proxy holds the status
// write; a StartContainer that answers meanwhile has answered what no
// record holds, and peapod is killed then.
func TestStartAnsweredOnlyOnceRecorded(t *testing.T) {
	t.Parallel()
	e, proxy, rt, cfg, sb := proxiedPod(t, "start-recorded")
	created, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: sb,
		Config: busybox("app", "echo up; while true; do sleep 0.1; done"), SandboxConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	id := created.ContainerId

	// The held call is the container's status write.
	held, started := proxy.holdDuring(t, "/containerd.services.containers.v1.Containers/Update", "StartContainer", func() error {
		_, err := rt.StartContainer(podCtx(t), &runtime.StartContainerRequest{ContainerId: id})
		return err
	})
	select {
	case err := <-started:
		t.Errorf("StartContainer answered (%v) while the container's status was not written yet", err)
	case <-time.After(2 * time.Second):
		held.pass()
		if err := <-started; err != nil {
			t.Fatalf("StartContainer: %v", err)
		}
	}
	before := containerStatus(t, rt, id).GetStatus()
	if before.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after its start: %s", before.GetState())
	}
	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)

	rt, _ = e.serve()
	after := containerStatus(t, rt, id).GetStatus()
	if after.GetState() != before.GetState() || after.GetStartedAt() != before.GetStartedAt() {
		t.Errorf("after peapod's restart the container is %s, started at %s; StartContainer answered %s, started at %s",
			after.GetState(), time.Unix(0, after.GetStartedAt()).Format(time.StampNano),
			before.GetState(), time.Unix(0, before.GetStartedAt()).Format(time.StampNano))
	}
	removePodOf(t, rt, sb)
	if err := e.leftovers(sb, id); err != nil {
		t.Error(err)
	}
}

// A bundle directory of a container's task that containerd left and no
// longer knows: containerd makes it before it starts the task's shim, and a
// containerd stopped in between leaves it, which containerd 1.6 does not
// always remove when it starts again. Every create of the ID then failed on
// it ("mkdir <bundle>: file exists"), for good: TestChaos met a
// StartContainer that never finished on 1.6. peapod removes such a bundle
// (no task of the ID, no shim of it running, nothing of it changed for 5 s:
// one this old is removed at once) and starts the container.
func TestStartOverAnOrphanBundle(t *testing.T) {
	t.Parallel()
	ctrd := startPrivateContainerd(t) // its state directory is the test's
	e := newPodEnv(t)
	e.containerd = ctrd.sock
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("orphan-bundle")
	sb := runPod(t, rt, cfg)
	created, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: sb,
		Config: busybox("app", "echo up; while true; do sleep 0.1; done"), SandboxConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	id := created.ContainerId
	// What a containerd stopped between making the bundle and starting its
	// shim leaves: the directory, the spec, the rootfs mount point.
	bundle := filepath.Join(ctrd.dir, "state", "io.containerd.runtime.v2.task", e.ns, id)
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}

	begin := time.Now()
	if _, err := rt.StartContainer(podCtx(t), &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer over a bundle containerd left: %v", err)
	}
	t.Logf("started in %s", time.Since(begin))
	st := containerStatus(t, rt, id).GetStatus()
	if st.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after its start: %s", st.GetState())
	}
	wantFirstLine(t, st.GetLogPath(), "up")
	removePodOf(t, rt, sb)
	if err := e.leftovers(sb, id); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(bundle); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the container's bundle is still there after its removal: %v", err)
	}
}

// An exit that names no process (pid 0) is containerd's guess when a shim's
// connection closes (137, or 255 when the shim's delete failed), and
// containerd 1.6 sends one for the shim of an earlier task of the ID, one a
// Start cut short, after a retried Start has made the task that runs now.
// TestChaos met it on 1.6: the container was recorded exited (255) while
// its process ran on, and the StopContainer that followed, finding it
// exited, left the process running. Here the exit is published as
// containerd publishes it; the container's process runs, so it stays
// running, and a stop ends it with its TERM trap's code.
func TestExitNamingNoProcess(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("no-pid-exit")
	sb := runPod(t, rt, cfg)
	id := startContainer(t, rt, sb, cfg, busybox("app", "trap 'exit 7' TERM; echo up; while true; do sleep 0.1; done"))
	pid := e.taskPid(id)

	ctx, cancel := e.ctrdCtx()
	defer cancel()
	if err := e.ctrd().EventService().Publish(ctx, "/tasks/exit", &apievents.TaskExit{
		ContainerID: id, ID: id, Pid: 0, ExitStatus: 255, ExitedAt: timestamppb.Now(),
	}); err != nil {
		t.Fatalf("publishing a task exit naming no process: %v", err)
	}
	// peapod records an exit it takes for the container's within
	// milliseconds of the event; the container must stay running for
	// good, which these seconds stand for.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if st := containerStatus(t, rt, id).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("after an exit naming no process, container is %s (exit %d), want RUNNING: its process %d %s",
				st.GetState(), st.GetExitCode(), pid, processState(pid))
		}
	}
	if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if st := containerStatus(t, rt, id).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 7 {
		t.Errorf("stopped container: %s, exit %d; want EXITED, 7 (its TERM trap)", st.GetState(), st.GetExitCode())
	}
	if s := processState(pid); s != "gone" {
		t.Errorf("the process %d of the stopped container: %s", pid, s)
	}
	removePodOf(t, rt, sb)
}
