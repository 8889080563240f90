//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/failpoint"
)

// criView is what peapod answers about a pod and its containers.
type criView struct {
	pods       *runtime.ListPodSandboxResponse
	pod        *runtime.PodSandboxStatusResponse
	containers *runtime.ListContainersResponse
	status     map[string]*runtime.ContainerStatusResponse
}

func viewOf(t *testing.T, rt runtime.RuntimeServiceClient, sandboxID string, containerIDs []string) criView {
	t.Helper()
	v := criView{pod: sandboxStatus(t, rt, sandboxID), status: map[string]*runtime.ContainerStatusResponse{}}
	var err error
	if v.pods, err = rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{}); err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	if v.containers, err = rt.ListContainers(callCtx(t), &runtime.ListContainersRequest{}); err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	for _, id := range containerIDs {
		v.status[id] = containerStatus(t, rt, id)
	}
	return v
}

// writerLine is one line of the writer's log: "line <n> <uptime when
// written>".
type writerLine struct {
	logLine
	written time.Time
}

// writerScript counts lines, ten a second, each with the time it is written
// (the machine's uptime: busybox's date has no fraction of a second).
const writerScript = `i=0; while true; do read up rest </proc/uptime; echo "line $i $up"; i=$((i+1)); sleep 0.1; done`

// writerLines reads the writer's log, whose lines are counted from 0 in
// order: a gap or a restart of the count means the writer was disturbed.
func writerLines(path string) ([]writerLine, error) {
	lines, err := readLog(path)
	if err != nil {
		return nil, err
	}
	boot, err := bootTime()
	if err != nil {
		return nil, err
	}
	out := make([]writerLine, len(lines))
	for i, l := range lines {
		var n int
		var up float64
		if _, err := fmt.Sscanf(l.msg, "line %d %f", &n, &up); err != nil || n != i || l.stream != "stdout" || l.tag != "F" {
			return nil, fmt.Errorf("%s: entry %d is %+v, want stdout F \"line %d <uptime>\"", path, i, l, i)
		}
		out[i] = writerLine{logLine: l, written: boot.Add(time.Duration(up * float64(time.Second)))}
	}
	return out, nil
}

// bootTime is when the machine booted, as /proc/uptime counts (to 10 ms).
func bootTime() (time.Time, error) {
	b, err := os.ReadFile("/proc/uptime")
	now := time.Now()
	if err != nil {
		return time.Time{}, err
	}
	var up float64
	if _, err := fmt.Sscanf(string(b), "%f", &up); err != nil {
		return time.Time{}, fmt.Errorf("/proc/uptime: %q: %v", b, err)
	}
	return now.Add(-time.Duration(up * float64(time.Second))), nil
}

// Running pods outlive peapod: after a SIGKILL and a restart, List and
// Status answer as before, a container that exited meanwhile shows its exit,
// a running one was not disturbed and its log kept flowing.
func TestRestartKeepsPodsRunning(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)

	signals := tempDir(t)
	signalMount := &runtime.Mount{HostPath: signals, ContainerPath: "/signal"}
	cfg := e.podConfig("survivor")
	sbID := runPod(t, rt, cfg)
	writerID := startContainer(t, rt, sbID, cfg, busybox("writer", writerScript))
	// exiter exits while peapod is down, late after it is back.
	exiterID := startContainer(t, rt, sbID, cfg, busybox("exiter", `until [ -e /signal/exit ]; do sleep 0.1; done; exit 3`, signalMount))
	writerLog := filepath.Join(cfg.LogDirectory, "writer.log")
	countLines := func() int {
		lines, err := writerLines(writerLog)
		if err != nil {
			t.Fatal(err)
		}
		return len(lines)
	}
	eventually(t, 10*time.Second, "the writer logs", func() error {
		if n := countLines(); n < 3 {
			return fmt.Errorf("%d lines", n)
		}
		return nil
	})

	// late starts just before the kill: what StartContainer answered must
	// be what peapod recorded (a status written after the answer was lost
	// to the kill, and the restarted peapod gave late its process's start
	// time).
	lateID := startContainer(t, rt, sbID, cfg, busybox("late", `until [ -e /signal/late ]; do sleep 0.1; done; exit 4`, signalMount))
	ids := []string{writerID, exiterID, lateID}
	before := viewOf(t, rt, sbID, ids)
	if st := before.pod.Status; st.State != runtime.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() == "" {
		t.Fatalf("pod before the restart: %v", st)
	}
	for _, id := range ids {
		if st := before.status[id].Status; st.State != runtime.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("container %s before the restart: %v", st.Metadata.Name, st)
		}
	}
	writerPid := infoPid(t, before.status[writerID].Info)
	podPid := infoPid(t, before.pod.Info)
	if writerPid <= 0 || podPid <= 0 {
		t.Fatalf("verbose status pids: writer %d, pause %d", writerPid, podPid)
	}
	writerStart := processStart(t, writerPid)

	e.d.signal(syscall.SIGKILL)
	e.d.wait(5 * time.Second)
	killed := time.Now()
	atKill := countLines()

	// While peapod is down: exiter exits, the writer writes on.
	if err := os.WriteFile(filepath.Join(signals, "exit"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "exiter's task stops while peapod is down", func() error {
		if st := e.taskStatus(exiterID); st != "stopped" {
			return fmt.Errorf("task status %q", st)
		}
		return nil
	})
	eventually(t, 10*time.Second, "the writer logs while peapod is down", func() error {
		if n := countLines(); n < atKill+10 {
			return fmt.Errorf("%d lines, %d at the kill", n, atKill)
		}
		return nil
	})
	atRestart := countLines()
	t.Logf("the writer logged %d lines while peapod was down for %s", atRestart-atKill, time.Since(killed))

	rt, _ = e.serve()
	restarted := time.Now()
	after := viewOf(t, rt, sbID, ids)

	// The pod answers exactly as before.
	if !proto.Equal(before.pods, after.pods) {
		t.Errorf("ListPodSandbox after the restart:\n%v\nbefore:\n%v", after.pods, before.pods)
	}
	if !proto.Equal(before.pod, after.pod) {
		t.Errorf("PodSandboxStatus after the restart:\n%v\nbefore:\n%v", after.pod, before.pod)
	}
	if pid := infoPid(t, after.pod.Info); pid != podPid {
		t.Errorf("pause pid after the restart %d, before %d", pid, podPid)
	}
	// The containers too, but for exiter's exit.
	wantList := proto.Clone(before.containers).(*runtime.ListContainersResponse)
	for _, c := range wantList.Containers {
		if c.Id == exiterID {
			c.State = runtime.ContainerState_CONTAINER_EXITED
		}
	}
	if !proto.Equal(wantList, after.containers) {
		t.Errorf("ListContainers after the restart:\n%v\nwant:\n%v", after.containers, wantList)
	}
	for _, id := range []string{writerID, lateID} {
		if !proto.Equal(before.status[id], after.status[id]) {
			t.Errorf("ContainerStatus(%s) after the restart:\n%v\nbefore:\n%v", id, after.status[id], before.status[id])
		}
	}
	ex := after.status[exiterID].Status
	wantEx := proto.Clone(before.status[exiterID].Status).(*runtime.ContainerStatus)
	wantEx.State, wantEx.ExitCode, wantEx.Reason, wantEx.FinishedAt = runtime.ContainerState_CONTAINER_EXITED, 3, "Error", ex.FinishedAt
	if !proto.Equal(ex, wantEx) {
		t.Errorf("ContainerStatus(exiter) after the restart:\n%v\nwant:\n%v", ex, wantEx)
	}
	if fin := time.Unix(0, ex.FinishedAt); fin.Before(killed) || fin.After(restarted) {
		t.Errorf("exiter finished at %s, want between the kill (%s) and the restart (%s)", fin, killed, restarted)
	}

	// The writer was never interrupted: same process, and a log without a gap.
	if pid := infoPid(t, after.status[writerID].Info); pid != writerPid {
		t.Errorf("writer pid after the restart %d, before %d", pid, writerPid)
	}
	if st := processStart(t, writerPid); st != writerStart {
		t.Errorf("writer pid %d started at tick %s, before the restart at %s: not the same process", writerPid, st, writerStart)
	}
	eventually(t, 10*time.Second, "the writer logs after the restart", func() error {
		if n := countLines(); n < atRestart+10 {
			return fmt.Errorf("%d lines, %d at the restart", n, atRestart)
		}
		return nil
	})
	lines, err := writerLines(writerLog)
	if err != nil {
		t.Fatal(err)
	}
	// Each line reached the log at once, across the restart: the IO server
	// kept running. (The pauses between lines are the writer's too, which
	// a loaded host schedules late: they are only logged.)
	var maxGap, maxLag time.Duration
	for i, l := range lines {
		maxLag = max(maxLag, l.time.Sub(l.written))
		if i > 0 {
			maxGap = max(maxGap, l.time.Sub(lines[i-1].time))
		}
	}
	t.Logf("writer: %d lines, longest pause between two %s, longest from a write to the log %s", len(lines), maxGap, maxLag)
	if maxLag > time.Second {
		t.Errorf("a line of the writer reached its log %s after it was written", maxLag)
	}

	// Exits are followed after the restart; exec works.
	if err := os.WriteFile(filepath.Join(signals, "late"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "late's exit is seen by the restarted peapod", func() error {
		st := containerStatus(t, rt, lateID).Status
		if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 4 || st.FinishedAt == 0 {
			return fmt.Errorf("state %s, exit code %d, finished %d", st.State, st.ExitCode, st.FinishedAt)
		}
		return nil
	})
	if out, code := execSync(t, rt, writerID, "echo", "alive"); out != "alive\n" || code != 0 {
		t.Errorf("ExecSync after the restart: %q, exit %d", out, code)
	}

	// Everything stops and goes.
	if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if st := containerStatus(t, rt, writerID).Status; st.State != runtime.ContainerState_CONTAINER_EXITED {
		t.Errorf("writer after StopPodSandbox: %v", st)
	}
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if list, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{}); err != nil || len(list.Items) != 0 {
		t.Errorf("ListPodSandbox after RemovePodSandbox = %v, %v", list.GetItems(), err)
	}
	if list, err := rt.ListContainers(callCtx(t), &runtime.ListContainersRequest{}); err != nil || len(list.Containers) != 0 {
		t.Errorf("ListContainers after RemovePodSandbox = %v, %v", list.GetContainers(), err)
	}
	eventually(t, 10*time.Second, "nothing of the pod is left", func() error {
		return e.leftovers(sbID, ids...)
	})
}

// recovered waits until the env's peapod has recovered its state: a List
// call answers (until then each waits for the recovery, boundedly, and
// answers Unavailable). Recovery settles what a crash cut short before it
// is done, so what the test then sees is final, and it must have settled
// it at once: an error it logged (a clean-up that failed and was left to a
// retry in the background) fails the test.
func (e *podEnv) recovered(rt runtime.RuntimeServiceClient) {
	e.t.Helper()
	deadline := time.Now().Add(podTimeout)
	for {
		_, err := rt.ListPodSandbox(podCtx(e.t), &runtime.ListPodSandboxRequest{})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			e.t.Fatalf("peapod does not recover its state: %v", err)
		}
	}
	if errs := recoveryErrors(e.d.stderr.String()); len(errs) > 0 {
		e.t.Errorf("peapod's recovery logged errors:\n%s", strings.Join(errs, "\n"))
	}
}

// recoveryErrors are the error lines of a peapod's log (klog's, which begin
// "E" and the date) up to the end of its start-up recovery.
func recoveryErrors(log string) []string {
	var errs []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Recovered state from containerd") {
			break
		}
		if len(line) > 1 && line[0] == 'E' && line[1] >= '0' && line[1] <= '9' {
			errs = append(errs, line)
		}
	}
	return errs
}

// processStart is the start time of a process, in clock ticks since boot:
// with its pid, it names the process.
func processStart(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	// The fields after the command (in parentheses, maybe with spaces).
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(fields) < 20 {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return fields[19] // starttime, field 22 of stat
}

// A RunPodSandbox cut short by a crash at any step leaves nothing behind
// once peapod is back, and the pod can be run again.
func TestRestartFailpointsRunPodSandbox(t *testing.T) {
	t.Parallel()
	// The network is set up while the pause task is made and started: a
	// crash in one leaves the other done, or not, or half done.
	const no, yes, either = 0, 1, 2
	for _, fp := range []struct {
		name string
		// What the interrupted run has made when peapod dies.
		container bool
		network   int // IP allocated
		task      int // pause running
	}{
		{name: "sandbox-run:after-netns"},
		{name: "sandbox-run:after-files"},
		{name: "sandbox-run:after-container", container: true},
		{name: "sandbox-run:after-cni-add", container: true, network: yes, task: either},
		{name: "sandbox-run:before-task", container: true, network: either},
		{name: "sandbox-run:after-start", container: true, network: either, task: yes},
	} {
		t.Run(fp.name, func(t *testing.T) {
			t.Parallel()
			e := newPodEnv(t)
			d := e.start(failpoint.EnvVar + "=" + fp.name)
			rt := d.waitServing()
			cfg := e.podConfig("crash")
			cfg.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 80, HostPort: int32(freePort(t))}}

			_, err := rt.RunPodSandbox(podCtx(t), &runtime.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				t.Fatalf("RunPodSandbox succeeded with failpoint %s armed", fp.name)
			}
			wantCode(t, "RunPodSandbox as peapod dies", err, codes.Unavailable)
			d.wait(10 * time.Second)
			if !strings.Contains(d.stderr.String(), "Failpoint hit") {
				t.Errorf("peapod exited without hitting its failpoint:\n%s", d.stderr.String())
			}

			// What the interrupted run left proves where it was cut.
			if ns := e.netnsFiles(); len(ns) != 1 {
				t.Errorf("pinned network namespaces after the crash: %q, want one", ns)
			}
			ctrs := e.containerdContainers()
			var sbID string
			switch {
			case fp.container && len(ctrs) == 1:
				sbID = ctrs[0]
			case fp.container || len(ctrs) != 0:
				t.Fatalf("containerd containers after the crash: %q, want %d", ctrs, map[bool]int{true: 1}[fp.container])
			}
			if sbID != "" {
				is := func(b bool) int { return map[bool]int{false: no, true: yes}[b] }
				if ips := ipAllocations(t, sbID); fp.network != either && is(len(ips) == 1) != fp.network {
					t.Errorf("IP allocations of %s after the crash: %q, want network set up: %v", sbID, ips, fp.network == yes)
				}
				if st := e.taskStatus(sbID); fp.task != either && is(st == "running") != fp.task {
					t.Errorf("pause task of %s after the crash: %q, want running: %v", sbID, st, fp.task == yes)
				}
				if procs := processesOf(sbID); fp.task != either && is(len(procs) > 0) != fp.task {
					t.Errorf("processes of sandbox %s after the crash: %q, want its pause: %v", sbID, procs, fp.task == yes)
				}
			}

			// Back without the failpoint: the half-made sandbox is gone
			// once peapod has recovered (its shim may still be exiting).
			rt, _ = e.serve()
			e.recovered(rt)
			if list, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{}); err != nil || len(list.Items) != 0 {
				t.Errorf("ListPodSandbox after the recovery = %v, %v; want none", list.GetItems(), err)
			}
			var made []string
			if sbID != "" {
				made = []string{sbID}
			}
			if err := e.leftoversOf(made, nil); err != nil {
				t.Errorf("the recovery left of the interrupted sandbox: %v", err)
			}
			eventually(t, 10*time.Second, "the interrupted sandbox's processes end", func() error {
				return e.leftovers(sbID)
			})

			// The name is free: the kubelet's retry succeeds.
			id := runPod(t, rt, cfg)
			if id == sbID {
				t.Errorf("the retry got the interrupted sandbox's ID %s", id)
			}
			if st := sandboxStatus(t, rt, id).Status; st.State != runtime.PodSandboxState_SANDBOX_READY {
				t.Errorf("retried pod: %v", st)
			}
			if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Fatalf("StopPodSandbox: %v", err)
			}
			if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Fatalf("RemovePodSandbox: %v", err)
			}
			eventually(t, 10*time.Second, "nothing of the retried pod is left", func() error {
				return errors.Join(e.leftovers(id), e.leftovers(sbID))
			})
			if _, err := rt.PodSandboxStatus(callCtx(t), &runtime.PodSandboxStatusRequest{PodSandboxId: id}); status.Code(err) != codes.NotFound {
				t.Errorf("PodSandboxStatus of the removed pod: %v, want NotFound", err)
			}
		})
	}
}

// A sandbox whose record cannot be read at start-up is left alone: its pause
// keeps running with its network namespace, /dev/shm and files, even though
// peapod cannot list it.
func TestUnreadableSandboxRecordLeavesThePodAlone(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, _ := e.serve()
	cfg := e.podConfig("unreadable")
	sbID := runPod(t, rt, cfg)
	pausePid := infoPid(t, sandboxStatus(t, rt, sbID).Info)
	netns := e.netnsFiles()
	mounts := e.mountsUnderState()
	dirs := e.sandboxDirs()
	if len(netns) != 1 || len(mounts) == 0 || len(dirs) == 0 {
		t.Fatalf("before: netns %q, mounts %q, dirs %q", netns, mounts, dirs)
	}
	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)

	// Garble the record, as a bad write or a downgrade could.
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	ctr, err := containerdClient(t).LoadContainer(ctx, sbID)
	if err != nil {
		t.Fatal(err)
	}
	var orig typeurl.Any
	setRecord := func(ctx context.Context, ext typeurl.Any) error {
		return ctr.Update(ctx, func(_ context.Context, _ *client.Client, c *containers.Container) error {
			if orig == nil {
				orig = c.Extensions[sandboxRecordKey]
			}
			c.Extensions[sandboxRecordKey] = ext
			return nil
		})
	}
	if err := setRecord(ctx, &anypb.Any{TypeUrl: "io.peapod/sandbox.Record", Value: []byte("{not json")}); err != nil {
		t.Fatalf("garbling the record: %v", err)
	}

	rt, _ = e.serve()
	if list, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{}); err != nil || len(list.Items) != 0 {
		t.Errorf("ListPodSandbox = %v, %v; want no pod it can read", list.GetItems(), err)
	}
	if err := syscall.Kill(pausePid, 0); err != nil {
		t.Errorf("the pause process %d is gone: %v", pausePid, err)
	}
	if got := e.netnsFiles(); !slices.Equal(got, netns) {
		t.Errorf("network namespaces %q, want %q kept", got, netns)
	}
	if got := e.mountsUnderState(); !slices.Equal(got, mounts) {
		t.Errorf("mounts under the state directory %q, want %q kept", got, mounts)
	}
	if got := e.sandboxDirs(); !slices.Equal(got, dirs) {
		t.Errorf("sandbox directories %q, want %q kept", got, dirs)
	}

	// Make it readable again, so that the test's cleanup removes the pod.
	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	ctx2, cancel2 := e.ctrdCtx()
	defer cancel2()
	if err := setRecord(ctx2, orig); err != nil {
		t.Fatalf("restoring the record: %v", err)
	}
}

// sandboxRecordKey is the containerd container extension holding a sandbox's record.
const sandboxRecordKey = "io.peapod.sandbox"

// A crash inside StartContainer: before the task was made, the container
// is still created, and the next StartContainer makes it, once containerd
// has had time to finish or undo a create under way. After the task was
// created but not started, the container is still created, and the next StartContainer
// starts that same task, whose IO (the fifos the IO server reads, with a
// stdin fifo too or not) outlived peapod: its output reaches the log.
// No new task is made with the container's ID, which containerd 1.6 could
// lose (see container.finishStart). After the task started, the restarted
// peapod adopts it as running, watches it, and records its exit.
func TestRestartFailpointsStartContainer(t *testing.T) {
	t.Parallel()
	for _, fp := range []struct {
		name    string
		started bool
		stdin   bool // it has a stdin fifo as well
	}{
		{name: "container-start:before-task"},
		{name: "container-start:after-task"},
		{name: "container-start:after-task", stdin: true},
		{name: "container-start:after-start", started: true},
	} {
		t.Run(fmt.Sprintf("%s/stdin=%v", fp.name, fp.stdin), func(t *testing.T) {
			t.Parallel()
			e := newPodEnv(t)
			rt, ic := e.serve()
			pull(t, ic, busyboxRef)
			cfg := e.podConfig("crash-start")
			sbID := runPod(t, rt, cfg)
			ctrCfg := busybox("app", "trap 'exit 7' TERM; echo up; while true; do sleep 0.1; done")
			ctrCfg.Stdin = fp.stdin
			created, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: sbID, Config: ctrCfg, SandboxConfig: cfg})
			if err != nil {
				t.Fatalf("CreateContainer: %v", err)
			}
			id := created.ContainerId
			e.crashInStart(id, fp.name)

			rt, _ = e.serve()
			st := containerStatus(t, rt, id).GetStatus()
			if !fp.started {
				if st.GetState() != runtime.ContainerState_CONTAINER_CREATED {
					t.Fatalf("after a crash before the task started: %s, want CREATED", st.GetState())
				}
				// An unstarted task is deleted by recovery, as containerd's
				// CRI deletes it at its start; the next start makes its own.
				if ts := e.taskStatus(id); ts != "" {
					t.Errorf("the unstarted task is %q after recovery, want it deleted", ts)
				}
				if _, err := rt.StartContainer(podCtx(t), &runtime.StartContainerRequest{ContainerId: id}); err != nil {
					t.Fatalf("StartContainer after the restart: %v", err)
				}
				st = containerStatus(t, rt, id).GetStatus()
				eventually(t, 10*time.Second, "its output is logged", func() error {
					lines, err := readLog(st.GetLogPath())
					if err != nil || !slices.ContainsFunc(lines, func(l logLine) bool { return l.msg == "up" }) {
						return fmt.Errorf("log %v: %v", lines, err)
					}
					return nil
				})
			}
			if st.GetState() != runtime.ContainerState_CONTAINER_RUNNING || st.GetStartedAt() == 0 {
				t.Fatalf("state %s, started at %d; want RUNNING with a start time", st.GetState(), st.GetStartedAt())
			}
			if out, code := execSync(t, rt, id, "echo", "alive"); code != 0 || strings.TrimSpace(out) != "alive" {
				t.Errorf("exec in the container: %q, exit %d", out, code)
			}
			// A stop records the container's own exit (its TERM trap's
			// code) before it answers.
			if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
				t.Fatalf("StopContainer: %v", err)
			}
			if st := containerStatus(t, rt, id).GetStatus(); st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 7 {
				t.Errorf("after StopContainer: state %s, exit %d; want EXITED, 7", st.GetState(), st.GetExitCode())
			}
			if ps := processesOf(id); len(ps) != 0 {
				t.Errorf("processes of the container left: %q", ps)
			}
		})
	}
}

// Containers that exit at once, started one after the other, are recorded
// Completed (exit 0) and stay so across a restart: the exit's status write
// is never overwritten by the start's.
func TestFastExitsSurviveRestart(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("fast-exits")
	sbID := runPod(t, rt, cfg)
	var ids []string
	for i := range 15 {
		ids = append(ids, startContainer(t, rt, sbID, cfg, busybox(fmt.Sprintf("quick%d", i), "exit 0")))
	}
	completed := func(rt runtime.RuntimeServiceClient) error {
		for _, id := range ids {
			st := containerStatus(t, rt, id).GetStatus()
			if st.GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 0 || st.GetReason() != "Completed" {
				return fmt.Errorf("container %s: %s, exit %d, %q; want EXITED, 0, Completed", id, st.GetState(), st.GetExitCode(), st.GetReason())
			}
		}
		return nil
	}
	eventually(t, 20*time.Second, "every container completed", func() error { return completed(rt) })
	e.d.signal(syscall.SIGKILL)
	e.d.wait(10 * time.Second)
	rt, _ = e.serve()
	if err := completed(rt); err != nil {
		t.Errorf("after a restart: %v", err)
	}
}

// A task create that containerd gave up on (its caller died) can complete
// in the shim after containerd cleaned up, leaving the OCI runtime a
// created container that containerd does not list, with the container's
// ID. StartContainer deletes it and starts the container; RemoveContainer
// deletes one left to a container that never started.
func TestRuntimeOrphanOfACutShortCreate(t *testing.T) {
	t.Parallel()
	runc := os.Getenv("PEAPOD_TEST_RUNC")
	if runc == "" {
		runc = "runc"
	}
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("orphan")
	sb := runPod(t, rt, cfg)
	create := func(name string) string {
		resp, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{PodSandboxId: sb, Config: busybox(name, "echo up; sleep 3600"), SandboxConfig: cfg})
		if err != nil {
			t.Fatal(err)
		}
		return resp.ContainerId
	}
	started, left := create("started"), create("left")
	root := filepath.Join("/run/containerd/runc", e.ns) // the runc shim's, for the env's namespace
	for _, id := range []string{started, left} {
		makeRuntimeOrphan(t, runc, root, id)
	}

	if _, err := rt.StartContainer(podCtx(t), &runtime.StartContainerRequest{ContainerId: started}); err != nil {
		t.Fatalf("StartContainer over an orphan of the OCI runtime: %v", err)
	}
	st := containerStatus(t, rt, started).GetStatus()
	if st.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("started container is %s", st.GetState())
	}
	wantFirstLine(t, st.GetLogPath(), "up")

	if _, err := rt.RemoveContainer(podCtx(t), &runtime.RemoveContainerRequest{ContainerId: left}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, left)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the OCI runtime's container %s is left after RemoveContainer (%v)", left, err)
	}
	if p := processesOf(left); len(p) > 0 {
		t.Errorf("processes of the removed container: %q", p)
	}
}

// makeRuntimeOrphan creates, with runc alone, a container of ID id under
// the runc state root root, as a task create that containerd gave up on
// leaves it: created, its init waiting to be started.
func makeRuntimeOrphan(t *testing.T, runc, root, id string) {
	t.Helper()
	bundle := tempDir(t)
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	io, err := os.ReadFile(filepath.Join(filepath.Dir(peapodBin), "peapod-io"))
	if err == nil {
		err = os.WriteFile(filepath.Join(bundle, "rootfs", "pause"), io, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	// runc's output goes to a file: the init that create leaves would hold
	// a pipe open, and a wait for its end would never return.
	run := func(args ...string) {
		t.Helper()
		out, err := os.Create(filepath.Join(bundle, "runc.out"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		cmd := exec.Command(runc, args...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = bundle, out, out
		if err := cmd.Run(); err != nil {
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("%s %q: %v: %s", runc, args, err, b)
		}
	}
	run("spec")
	raw, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	spec["root"] = map[string]any{"path": "rootfs"}
	process := spec["process"].(map[string]any)
	process["terminal"], process["args"] = false, []string{"/pause", "pause"}
	if raw, err = json.Marshal(spec); err == nil {
		err = os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	run("--root", root, "create", "--bundle", bundle, id)
	t.Cleanup(func() { _ = exec.Command(runc, "--root", root, "delete", "--force", id).Run() })
}
