package container

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container's record is read from its two extensions; one written before
// the split, holding metadata and status together, reads the same; the
// status extension, when there, is the status; updated resources replace
// the config's.
func TestDecodeRecord(t *testing.T) {
	cfg, _ := proto.Marshal(&runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "app"},
		Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{CpuShares: 2}}})
	res, _ := proto.Marshal(&runtime.LinuxContainerResources{CpuShares: 512})
	meta := Metadata{ID: "c1", SandboxID: "sb1", Config: cfg, LogPath: "/logs/app.log"}
	ext := func(v any) typeurl.Any {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return &anypb.Any{TypeUrl: "x", Value: b}
	}
	legacy := Record{Metadata: meta, Status: Status{State: StateRunning, Pid: 42}}
	cases := []struct {
		name       string
		exts       map[string]typeurl.Any
		wantState  State
		wantPid    uint32
		wantShares int64
	}{
		{"before the split", map[string]typeurl.Any{recordExtension: ext(legacy)}, StateRunning, 42, 2},
		{"split", map[string]typeurl.Any{recordExtension: ext(meta), statusExtension: ext(Status{State: StateExited})}, StateExited, 0, 2},
		{"status over a legacy record", map[string]typeurl.Any{recordExtension: ext(legacy), statusExtension: ext(Status{State: StateExited})}, StateExited, 0, 2},
		{"updated resources", map[string]typeurl.Any{recordExtension: ext(meta), statusExtension: ext(Status{State: StateRunning, Resources: res})}, StateRunning, 0, 512},
	}
	for _, tc := range cases {
		c, err := decode(containers.Container{ID: "c1", Extensions: tc.exts})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if c.ID != "c1" || c.SandboxID != "sb1" || c.LogPath != "/logs/app.log" || c.Config.GetMetadata().GetName() != "app" {
			t.Errorf("%s: metadata %+v, config %v", tc.name, c.Metadata, c.Config)
		}
		if c.State != tc.wantState || c.Pid != tc.wantPid {
			t.Errorf("%s: state %s pid %d, want %s %d", tc.name, c.State, c.Pid, tc.wantState, tc.wantPid)
		}
		if got := c.Config.GetLinux().GetResources().GetCpuShares(); got != tc.wantShares {
			t.Errorf("%s: cpu shares %d, want %d", tc.name, got, tc.wantShares)
		}
	}
}

// A container's exit is that of its own process: not a late event's about
// a task since replaced (a Start cut short by a crash, then retried), nor
// an exit while not running. (TestExitReason covers the reasons.)
func TestContainerExitOfItsProcess(t *testing.T) {
	at := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		name     string
		state    State
		pid      uint32 // the container's
		exitPid  uint32 // the exited process's
		wantExit bool
	}{
		{name: "its process", state: StateRunning, pid: 10, exitPid: 10, wantExit: true},
		{name: "whichever process", state: StateRunning, pid: 10, exitPid: 0, wantExit: true},
		{name: "its pid unknown", state: StateRunning, pid: 0, exitPid: 10, wantExit: true},
		{name: "a replaced task's process", state: StateRunning, pid: 10, exitPid: 9},
		{name: "already exited", state: StateExited, exitPid: 10},
		{name: "never started", state: StateCreated, exitPid: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Container{Record: Record{Status: Status{State: tc.state, Pid: tc.pid}}}
			if got := c.exit(tc.exitPid, 137, at, false); got != tc.wantExit {
				t.Fatalf("exit: %v, want %v", got, tc.wantExit)
			}
			if tc.wantExit && (c.State != StateExited || c.ExitCode != 137 || !c.FinishedAt.Equal(at) || c.Pid != 0) {
				t.Errorf("record %+v, want exited with 137 at %s", c.Record.Status, at)
			}
			if !tc.wantExit && (c.State != tc.state || c.Pid != tc.pid || c.ExitCode != 0) {
				t.Errorf("record changed: %+v", c.Record.Status)
			}
		})
	}
}

func TestReported(t *testing.T) {
	at := time.Unix(1700000000, 0)
	exited := Container{Record: Record{Status: Status{State: StateExited, ExitCode: 3, FinishedAt: at, Reason: ReasonError, Message: "m"}}}
	if got := exited.Reported(); got.State != StateExited || got.ExitCode != 3 || !got.FinishedAt.Equal(at) || got.Reason != ReasonError {
		t.Errorf("Reported(exited) = %+v, want it unchanged", got.Status)
	}
	draining := exited
	draining.Draining = true
	got := draining.Reported()
	if got.State != StateRunning || got.ExitCode != 0 || !got.FinishedAt.IsZero() || got.Reason != "" || got.Message != "" {
		t.Errorf("Reported(draining) = %+v, want running with no exit", got.Status)
	}
	if draining.State != StateExited {
		t.Error("Reported changed the container it was called on")
	}
}
