//go:build kubelet

package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestKubelet runs every pod check at once, as a kubelet runs a node's
// pods, then checks that their removal left nothing behind and that
// neither the runtime nor the kubelet logged an error no check asked for.
func TestKubelet(t *testing.T) {
	netnsBefore := countEntries(*netnsDir)
	t.Run("pods", func(t *testing.T) {
		for _, c := range []struct {
			name string
			fn   func(*testing.T)
		}{
			{"SharedNamespacesAndEmptyDir", testShared},
			{"InitContainersInOrder", testInitContainers},
			{"Probes", testProbes},
			{"LivenessFailureRestarts", testLivenessRestart},
			{"LifecycleHooks", testHooks},
			{"GracefulTermination", testGracefulTermination},
			{"RestartPolicyAlways", testRestartAlways},
			{"RestartPolicyOnFailure", testRestartOnFailure},
			{"RestartPolicyNever", testRestartNever},
			{"ResourceLimitsInCgroups", testResources},
			{"ContainerLogsPrevious", testContainerLogs},
			{"HostPort", testHostPort},
			{"KilledContainerRestarts", testKilled},
		} {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.fn(t)
			})
		}
	})
	t.Run("after", func(t *testing.T) {
		t.Run("TeardownLeavesNothing", func(t *testing.T) { testTeardown(t, netnsBefore) })
		t.Run("NoRuntimeErrors", testNoErrors)
	})
}

func sh(script string) []string { return []string{"sh", "-c", script} }

// Two containers share the pod's network (localhost), UTS and IPC
// namespaces, and an emptyDir.
func testShared(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		Containers: []corev1.Container{
			{Name: "server", Command: sh("mkdir -p /www && echo from-server > /www/index.html && echo shared > /data/file && exec httpd -f -p 8080 -h /www"),
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
			{Name: "client", Command: sh("exec sleep 3600"),
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
		},
	}}
	pod.Name = "shared"
	p := runPod(t, pod, running("server", "client"), 90*time.Second)
	server, client := containerID(t, p, "server"), containerID(t, p, "client")
	for _, ns := range []string{"net", "uts", "ipc"} {
		a := execIn(t, server, "readlink", "/proc/self/ns/"+ns)
		b := execIn(t, client, "readlink", "/proc/self/ns/"+ns)
		if a != b {
			t.Errorf("%s namespaces differ: server %s, client %s", ns, a, b)
		}
	}
	if a, b := execIn(t, server, "hostname"), execIn(t, client, "hostname"); a != b || a != "shared-"+nodeName {
		t.Errorf("hostnames: server %q, client %q; want both %q", a, b, "shared-"+nodeName)
	}
	var got string
	for i := 0; i < 20; i++ { // httpd may still be starting
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := lab.cri.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: client, Cmd: []string{"wget", "-qO-", "http://127.0.0.1:8080/"}, Timeout: 5})
		cancel()
		if err == nil && resp.GetExitCode() == 0 {
			got = strings.TrimSpace(string(resp.GetStdout()))
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if got != "from-server" {
		t.Errorf("client's GET of localhost:8080 = %q, want the server's page", got)
	}
	if got := execIn(t, client, "cat", "/data/file"); got != "shared" {
		t.Errorf("client reads %q from the emptyDir, want %q", got, "shared")
	}
}

// Init containers run one at a time, in order, to completion, before the
// app containers start.
func testInitContainers(t *testing.T) {
	mount := []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		InitContainers: []corev1.Container{
			{Name: "first", Command: sh("sleep 1; echo first >> /work/order"), VolumeMounts: mount},
			{Name: "second", Command: sh("echo second >> /work/order"), VolumeMounts: mount},
		},
		Containers: []corev1.Container{{Name: "app", Command: sh("echo app >> /work/order; exec sleep 3600"), VolumeMounts: mount}},
	}}
	pod.Name = "init"
	p := runPod(t, pod, running("app"), 90*time.Second)
	if got := execIn(t, containerID(t, p, "app"), "cat", "/work/order"); got != "first\nsecond\napp" {
		t.Errorf("order of runs = %q, want first, second, app", got)
	}
	first, second := containerStatus(p, "first"), containerStatus(p, "second")
	for _, cs := range []*corev1.ContainerStatus{first, second} {
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 || cs.State.Terminated.Reason != "Completed" {
			t.Errorf("init container %s: state %+v, want terminated with exit 0, Completed", cs.Name, cs.State)
		}
	}
	if first.State.Terminated != nil && second.State.Terminated != nil &&
		second.State.Terminated.StartedAt.Before(&first.State.Terminated.FinishedAt) {
		t.Errorf("init container second started at %s, before first finished at %s",
			second.State.Terminated.StartedAt, first.State.Terminated.FinishedAt)
	}
}

// Exec, HTTP and TCP probes report readiness; a failing readiness probe
// keeps a container unready without restarting it.
func testProbes(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "web", Command: sh("mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8081 -h /www"),
			ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8081)}}},
			LivenessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
				TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8081)}}}},
		{Name: "exec", Command: sh("sleep 2; touch /tmp/ready; exec sleep 3600"),
			ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
				Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/ready"}}}},
			LivenessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
				Exec: &corev1.ExecAction{Command: []string{"true"}}}}},
		{Name: "never-ready", Command: sh("exec sleep 3600"),
			ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
				Exec: &corev1.ExecAction{Command: []string{"cat", "/nonexistent"}}}}},
	}}}
	pod.Name = "probes"
	runPod(t, pod, ready("web", "exec"), 90*time.Second)
	time.Sleep(5 * time.Second) // several more probe periods
	p, err := getPod("probes")
	if err != nil || p == nil {
		t.Fatalf("pod probes: %v", err)
	}
	for _, name := range []string{"web", "exec", "never-ready"} {
		cs := containerStatus(p, name)
		if cs.RestartCount != 0 || cs.State.Running == nil {
			t.Errorf("container %s: restarts %d, state %+v; want running, never restarted", name, cs.RestartCount, cs.State)
		}
		if want := name != "never-ready"; cs.Ready != want {
			t.Errorf("container %s: ready %v, want %v", name, cs.Ready, want)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionFalse {
			t.Errorf("pod Ready condition %s, want False (one container is never ready)", c.Status)
		}
	}
}

// A failing liveness probe gets the container killed and restarted.
func testLivenessRestart(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "flaky", Command: sh("touch /tmp/alive; sleep 4; rm /tmp/alive; exec sleep 3600"),
			LivenessProbe: &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 2, ProbeHandler: corev1.ProbeHandler{
				Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/alive"}}}}},
	}}}
	pod.Name = "liveness"
	p := runPod(t, pod, restarted("flaky", 1), 90*time.Second)
	cs := containerStatus(p, "flaky")
	if lt := cs.LastTerminationState.Terminated; lt == nil || lt.ExitCode != 137 {
		t.Errorf("last termination %+v, want killed (exit 137)", cs.LastTerminationState)
	}
}

// postStart runs when the container starts, preStop before it is stopped.
func testHooks(t *testing.T) {
	dir := hostDir(t)
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "hook", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}}}},
		Containers: []corev1.Container{{Name: "hooked", Command: sh("exec sleep 3600"),
			VolumeMounts: []corev1.VolumeMount{{Name: "hook", MountPath: "/hook"}},
			Lifecycle: &corev1.Lifecycle{
				PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: sh("echo started > /hook/poststart")}},
				PreStop:   &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: sh("echo stopping > /hook/prestop")}},
			}}},
	}}
	pod.Name = "hooks"
	runPod(t, pod, running("hooked"), 90*time.Second)
	if b, err := os.ReadFile(filepath.Join(dir, "poststart")); err != nil || strings.TrimSpace(string(b)) != "started" {
		t.Errorf("postStart hook's file: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "prestop")); err == nil {
		t.Error("preStop ran before the pod was deleted")
	}
	deletePod(t, pod.Name)
	if b, err := os.ReadFile(filepath.Join(dir, "prestop")); err != nil || strings.TrimSpace(string(b)) != "stopping" {
		t.Errorf("preStop hook's file: %q, %v", b, err)
	}
}

// Deleting a pod sends SIGTERM first, and SIGKILL only at the end of the
// grace period to a container that ignores it.
func testGracefulTermination(t *testing.T) {
	dir := hostDir(t)
	const grace = 5
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr(int64(grace)),
		Volumes:                       []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}}}},
		Containers: []corev1.Container{
			{Name: "stubborn", Command: sh(`trap 'touch /out/stubborn' TERM; while true; do sleep 0.2; done`),
				VolumeMounts: []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}},
			{Name: "polite", Command: sh(`trap 'touch /out/polite; exit 0' TERM; while true; do sleep 0.2; done`),
				VolumeMounts: []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}},
		},
	}}
	pod.Name = "grace"
	p := runPod(t, pod, running("stubborn", "polite"), 90*time.Second)
	stubborn, polite := containerID(t, p, "stubborn"), containerID(t, p, "polite")
	deleted := time.Now()
	deletePod(t, pod.Name)

	for name, id := range map[string]string{"stubborn": stubborn, "polite": polite} {
		// When the trap ran (at most one sleep of 0.2 s after the signal):
		// its file's time, which has a finer grain than date's seconds.
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("container %s never got SIGTERM: %v", name, err)
			continue
		}
		termAt := fi.ModTime()
		st := criStatus(t, id)
		if st == nil {
			continue
		}
		finished := time.Unix(0, st.GetFinishedAt())
		afterTerm := finished.Sub(termAt)
		t.Logf("%s: SIGTERM %s after deletion, finished %s after SIGTERM, exit %d",
			name, termAt.Sub(deleted).Round(100*time.Millisecond), afterTerm.Round(100*time.Millisecond), st.GetExitCode())
		switch name {
		case "stubborn":
			if st.GetExitCode() != 137 {
				t.Errorf("stubborn exit code %d, want 137 (SIGKILL)", st.GetExitCode())
			}
			// The kubelet stops it with the grace period as the stop's
			// timeout, and the runtime kills it when that has passed.
			if d := afterTerm - grace*time.Second; d < -1500*time.Millisecond || d > 1500*time.Millisecond {
				t.Errorf("stubborn was killed %s after SIGTERM, want the grace period (%ds) within 1.5 s", afterTerm, grace)
			}
		case "polite":
			if st.GetExitCode() != 0 {
				t.Errorf("polite exit code %d, want 0 (it exits on SIGTERM)", st.GetExitCode())
			}
			if afterTerm > 2*time.Second {
				t.Errorf("polite finished %s after SIGTERM, want at once", afterTerm)
			}
		}
	}
}

// criStatus is the runtime's status of a container the kubelet has not
// removed yet.
func criStatus(t *testing.T, id string) *runtime.ContainerStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := lab.cri.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Errorf("ContainerStatus %s: %v", id, err)
		return nil
	}
	return resp.GetStatus()
}

// restartPod runs one pod with the given restart policy and containers
// that exit with the given codes.
func restartPod(t *testing.T, name string, policy corev1.RestartPolicy, exits map[string]int, cond func(*corev1.Pod) bool) *corev1.Pod {
	pod := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: policy}}
	for c, code := range exits {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Command: sh(fmt.Sprintf("sleep 1; exit %d", code))})
	}
	pod.Name = name
	return runPod(t, pod, cond, 90*time.Second)
}

func testRestartAlways(t *testing.T) {
	p := restartPod(t, "always", corev1.RestartPolicyAlways, map[string]int{"fails": 3, "succeeds": 0},
		all(restarted("fails", 1), restarted("succeeds", 1)))
	for name, code := range map[string]int32{"fails": 3, "succeeds": 0} {
		if lt := containerStatus(p, name).LastTerminationState.Terminated; lt == nil || lt.ExitCode != code {
			t.Errorf("%s: last termination %+v, want exit %d", name, lt, code)
		}
	}
}

func testRestartOnFailure(t *testing.T) {
	p := restartPod(t, "onfailure", corev1.RestartPolicyOnFailure, map[string]int{"fails": 3, "succeeds": 0},
		all(restarted("fails", 1), terminated("succeeds")))
	cs := containerStatus(p, "succeeds")
	if cs.RestartCount != 0 || cs.State.Terminated.ExitCode != 0 || cs.State.Terminated.Reason != "Completed" {
		t.Errorf("succeeds: restarts %d, state %+v; want Completed (exit 0), never restarted", cs.RestartCount, cs.State.Terminated)
	}
}

func testRestartNever(t *testing.T) {
	restartPod(t, "never", corev1.RestartPolicyNever, map[string]int{"fails": 3, "succeeds": 0},
		func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	time.Sleep(12 * time.Second) // past the kubelet's first restart back-off
	p, err := getPod("never")
	if err != nil || p == nil {
		t.Fatalf("pod never: %v", err)
	}
	for name, code := range map[string]int32{"fails": 3, "succeeds": 0} {
		cs := containerStatus(p, name)
		if cs.RestartCount != 0 || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != code {
			t.Errorf("%s: restarts %d, state %+v; want exit %d, never restarted", name, cs.RestartCount, cs.State, code)
		}
	}
	if p.Status.Phase != corev1.PodFailed {
		t.Errorf("phase %s, want Failed", p.Status.Phase)
	}
}

// CPU and memory limits reach the container's cgroups, with no swap
// beyond the memory limit, and oom_score_adj follows the QoS class.
func testResources(t *testing.T) {
	limits := func(cpu, mem string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	}
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "guaranteed", Command: sh("exec sleep 3600"),
			Resources: corev1.ResourceRequirements{Limits: limits("500m", "64Mi"), Requests: limits("500m", "64Mi")}},
	}}}
	pod.Name = "resources"
	p := runPod(t, pod, running("guaranteed"), 90*time.Second)
	id := containerID(t, p, "guaranteed")
	v2 := execIn(t, id, "sh", "-c", "test -f /sys/fs/cgroup/cgroup.controllers && echo v2 || echo v1") == "v2"
	want := map[string]string{}
	if v2 {
		want["/sys/fs/cgroup/memory.max"] = "67108864"
		want["/sys/fs/cgroup/cpu.max"] = "50000 100000"
	} else {
		want["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "67108864"
		want["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] = "50000"
		want["/sys/fs/cgroup/cpu/cpu.cfs_period_us"] = "100000"
		want["/sys/fs/cgroup/cpu/cpu.shares"] = "512"
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
			// memory+swap = memory: no swap (the kubelet's NoSwap).
			want["/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"] = "67108864"
		}
	}
	for f, v := range want {
		if got := execIn(t, id, "cat", f); got != v {
			t.Errorf("%s = %q, want %q", f, got, v)
		}
	}
	// Guaranteed: -997, or the lowest the runtime may give where it may
	// not lower scores (this suite's own score stands in for the runtime's).
	wantAdj := "-997"
	if !canLowerOOMScore() {
		own, _ := os.ReadFile("/proc/self/oom_score_adj")
		wantAdj = strings.TrimSpace(string(own))
	}
	if got := execIn(t, id, "cat", "/proc/1/oom_score_adj"); got != wantAdj {
		t.Errorf("oom_score_adj = %s, want %s", got, wantAdj)
	}
}

// canLowerOOMScore tries what the runtime would need: lowering a score.
func canLowerOOMScore() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<24) != 0 // CAP_SYS_RESOURCE
		}
	}
	return false
}

// The kubelet serves a container's log, and its previous attempt's.
func testContainerLogs(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		Containers: []corev1.Container{{Name: "logger",
			Command: sh(`n=$(cat /state/n 2>/dev/null || echo 0); echo $((n+1)) > /state/n; echo "attempt $n"; echo "to stderr $n" >&2; ` +
				`if [ "$n" = 0 ]; then exit 1; fi; exec sleep 3600`),
			VolumeMounts: []corev1.VolumeMount{{Name: "state", MountPath: "/state"}}}},
	}}
	pod.Name = "logs"
	runPod(t, pod, all(restarted("logger", 1), running("logger")), 90*time.Second)
	cur := containerLogs(t, "logs", "logger", false)
	prev := containerLogs(t, "logs", "logger", true)
	for _, c := range []struct{ which, got, want string }{
		{"current", cur, "attempt 1\nto stderr 1\n"},
		{"previous", prev, "attempt 0\nto stderr 0\n"},
	} {
		if !sameLines(c.got, c.want) {
			t.Errorf("%s log = %q, want the lines of %q", c.which, c.got, c.want)
		}
	}
}

// sameLines compares logs whose stdout and stderr lines may interleave
// either way.
func sameLines(a, b string) bool {
	la, lb := strings.Split(strings.TrimSpace(a), "\n"), strings.Split(strings.TrimSpace(b), "\n")
	if len(la) != len(lb) {
		return false
	}
	seen := map[string]int{}
	for _, l := range la {
		seen[l]++
	}
	for _, l := range lb {
		seen[l]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// A hostPort reaches the pod from the node.
func testHostPort(t *testing.T) {
	const port = 18089
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "web", Command: sh("mkdir -p /www && echo via-hostport > /www/index.html && exec httpd -f -p 80 -h /www"),
			Ports: []corev1.ContainerPort{{ContainerPort: 80, HostPort: port, Protocol: corev1.ProtocolTCP}}},
	}}}
	pod.Name = "hostport"
	runPod(t, pod, running("web"), 90*time.Second)
	var got string
	var err error
	for i := 0; i < 40; i++ {
		var resp *http.Response
		if resp, err = (&http.Client{Timeout: 3 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got = strings.TrimSpace(string(b)); got == "via-hostport" {
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Errorf("GET 127.0.0.1:%d = %q, %v; want the pod's page", port, got, err)
}

// A container killed with SIGKILL from the node is restarted.
func testKilled(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "victim", Command: sh("exec sleep 3600")}}}}
	pod.Name = "killed"
	p := runPod(t, pod, running("victim"), 90*time.Second)
	pids := cgroupProcs(t, containerID(t, p, "victim"))
	if len(pids) == 0 {
		t.Fatal("found no process of the container in its cgroup")
	}
	for _, pid := range pids {
		if err := syscallKill(pid); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	}
	p = waitPod(t, "killed", "restarted after SIGKILL", 60*time.Second, all(restarted("victim", 1), running("victim")))
	lt := containerStatus(p, "victim").LastTerminationState.Terminated
	if lt == nil || lt.ExitCode != 137 || lt.Reason != "Error" {
		t.Errorf("last termination %+v, want exit 137, Error", lt)
	}
}

// cgroupProcs lists the processes of a container, found by its cgroup,
// which both lab runtimes name after the container ID.
func cgroupProcs(t *testing.T, id string) []int {
	t.Helper()
	root := "/sys/fs/cgroup/pids"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		root = "/sys/fs/cgroup"
	}
	var pids []int
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || d.Name() != id {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return filepath.SkipAll
	})
	return pids
}

// After every pod is gone, the kubelet's garbage collection removes their
// sandboxes and containers, and nothing of them is left: no network
// namespace, IP address or log directory.
func testTeardown(t *testing.T, netnsBefore int) {
	lab.mu.Lock()
	sandboxes := make(map[string]string, len(lab.sandboxes))
	for id, pod := range lab.sandboxes {
		sandboxes[id] = pod
	}
	lab.mu.Unlock()
	if len(sandboxes) == 0 {
		t.Fatal("no pod sandbox was seen")
	}
	var left []string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		left = leftovers(sandboxes, netnsBefore)
		if len(left) == 0 {
			t.Logf("%d pod sandboxes, all gone", len(sandboxes))
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	t.Errorf("3 minutes after the last pod was deleted, still left:\n  %s", strings.Join(left, "\n  "))
}

func leftovers(sandboxes map[string]string, netnsBefore int) []string {
	var left []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sel := map[string]string{"io.kubernetes.pod.namespace": namespace}
	if resp, err := lab.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{LabelSelector: sel}}); err != nil {
		left = append(left, "ListPodSandbox: "+err.Error())
	} else {
		for _, sb := range resp.GetItems() {
			left = append(left, fmt.Sprintf("sandbox %s of pod %s (%s)", sb.GetId(), sb.GetMetadata().GetName(), sb.GetState()))
		}
	}
	if resp, err := lab.cri.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{LabelSelector: sel}}); err != nil {
		left = append(left, "ListContainers: "+err.Error())
	} else {
		for _, c := range resp.GetContainers() {
			left = append(left, fmt.Sprintf("container %s (%s) of sandbox %s", c.GetId(), c.GetMetadata().GetName(), c.GetPodSandboxId()))
		}
	}
	if n := countEntries(*netnsDir); n > netnsBefore {
		left = append(left, fmt.Sprintf("%d network namespaces pinned in %s, %d before the suite", n, *netnsDir, netnsBefore))
	}
	if entries, err := os.ReadDir(*ipamDir); err == nil {
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(*ipamDir, e.Name()))
			owner, _, _ := strings.Cut(string(b), "\n")
			if pod, ok := sandboxes[strings.TrimSpace(owner)]; ok {
				left = append(left, fmt.Sprintf("IP %s of pod %s's sandbox", e.Name(), pod))
			}
		}
	}
	if entries, _ := os.ReadDir(lab.podLogs); len(entries) > 0 {
		for _, e := range entries {
			left = append(left, "pod log directory "+filepath.Join(lab.podLogs, e.Name()))
		}
	}
	return left
}

func countEntries(dir string) int {
	if dir == "" {
		return 0
	}
	entries, _ := os.ReadDir(dir)
	return len(entries)
}

// Neither the runtime nor the kubelet logged an error: "CRI call failed" in peapod's log (an Internal or
// Unknown answer), and the kubelet's error lines carrying a runtime's gRPC
// error.
func testNoErrors(t *testing.T) {
	if *runtimeLog != "" {
		f, err := os.Open(*runtimeLog)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.Seek(lab.runtimeOff, io.SeekStart)
		n := 0
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			if strings.Contains(s.Text(), "CRI call failed") {
				n++
				if n <= 10 {
					t.Errorf("runtime log: %s", s.Text())
				}
			}
		}
		if n > 0 {
			t.Errorf("%d CRI calls failed in %s", n, *runtimeLog)
		}
	}
	f, err := os.Open(lab.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	var errs []string
	raced := map[string]bool{} // containers the deletor found removed
	for s.Scan() {
		line := s.Text()
		if m := deletorRace.FindStringSubmatch(line); m != nil {
			raced[m[1]] = true
		}
		if m := danglingLog.FindStringSubmatch(line); m != nil {
			raced[m[1]] = true
		}
		if strings.HasPrefix(line, "E") && strings.Contains(line, "rpc error") {
			errs = append(errs, line)
		}
	}
	n, notFound := 0, 0
	for _, line := range errs {
		// The kubelet's container deletor races itself: two removals of
		// one container, the second asking its status after the first
		// removed it. NotFound is then the right answer, with every
		// runtime; the CRI client logs it, and the deletor says so. So
		// is it for the container of a dangling log symlink in
		// /var/log/containers (its pod's logs are gone), whose status
		// the kubelet's garbage collection asks before removing the link
		// (kubernetes/kubernetes#63336), and says so.
		if m := statusNotFound.FindStringSubmatch(line); m != nil && raced[m[1]] {
			notFound++
			continue
		}
		n++
		if n <= 10 {
			t.Errorf("kubelet log: %s", line)
		}
	}
	t.Logf("kubelet log: %d runtime errors, %d NotFound answers to the kubelet's deletor races and dangling log links", n, notFound)
	if n > 0 {
		t.Errorf("%d runtime errors in the kubelet's log %s", n, lab.logFile)
	}
}

var (
	// statusNotFound is the CRI client's error line for a ContainerStatus
	// answered NotFound; it names the container.
	statusNotFound = regexp.MustCompile(`"ContainerStatus from runtime service failed" err="rpc error: code = NotFound .*" containerID="([0-9a-f]+)"`)
	// deletorRace is the container deletor's line for a removal whose
	// container was found removed already (by its other removal).
	// danglingLog is the garbage collection's line for the container of a
	// dangling log symlink that the runtime does not have.
	danglingLog = regexp.MustCompile(`kuberuntime_gc\.go:[0-9]+\] "Error getting ContainerStatus for containerID" containerID="([0-9a-f]+)" err="rpc error: code = NotFound `)
	deletorRace = regexp.MustCompile(`pod_container_deletor\.go:[0-9]+\] "DeleteContainer returned error" containerID=\{"Type":"[^"]*","ID":"([0-9a-f]+)"\} err="failed to get container status \\"[0-9a-f]+\\": rpc error: code = NotFound `)
)

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
