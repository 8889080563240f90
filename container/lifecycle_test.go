package container

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestLogPath(t *testing.T) {
	cases := []struct {
		dir, rel, want string
		invalid        bool
	}{
		{dir: "/var/log/pods/ns_pod_uid", rel: "app/0.log", want: "/var/log/pods/ns_pod_uid/app/0.log"},
		{dir: "/var/log/pods/p", rel: "/app.log", want: "/var/log/pods/p/app.log"},
		{dir: "/var/log/pods/p", rel: "a/../b.log", want: "/var/log/pods/p/b.log"},
		{dir: "/var/log/pods/p/", rel: "b.log", want: "/var/log/pods/p/b.log"},
		{dir: "", rel: "b.log", want: ""},
		{dir: "/var/log/pods/p", rel: "", want: ""},
		{dir: "/var/log/pods/p", rel: "../../../etc/cron.d/x", invalid: true},
		{dir: "/var/log/pods/p", rel: "..", invalid: true},
		{dir: "/var/log/pods/p", rel: ".", invalid: true},
		{dir: "/var/log/pods/p", rel: "a/../../p2/x.log", invalid: true},
		{dir: "relative/dir", rel: "x.log", invalid: true},
	}
	for _, tc := range cases {
		got, err := logPath(tc.dir, tc.rel)
		if tc.invalid {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("logPath(%q, %q) = %q, %v; want InvalidArgument", tc.dir, tc.rel, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("logPath(%q, %q) = %q, %v; want %q", tc.dir, tc.rel, got, err, tc.want)
		}
	}
}

// The OOM event and the exit reach peapod in either order; the reason is
// OOMKilled either way, as with containerd's CRI.
func TestExitReason(t *testing.T) {
	at := time.Unix(1700000000, 0)
	cases := []struct {
		name        string
		steps       func(c *Container) (rewrites int)
		wantReason  string
		wantCode    int32
		wantRewrite int
	}{
		{name: "exit 0", steps: func(c *Container) int { c.exit(0, 0, at, false); return 0 }, wantReason: ReasonCompleted},
		{name: "exit 3", steps: func(c *Container) int { c.exit(0, 3, at, false); return 0 }, wantReason: ReasonError, wantCode: 3},
		{name: "SIGKILL, no OOM", steps: func(c *Container) int { c.exit(0, 137, at, false); return 0 }, wantReason: ReasonError, wantCode: 137},
		{name: "OOM event, then exit", steps: func(c *Container) int {
			n := b2i(c.oomKill())
			c.exit(0, 137, at, false)
			return n
		}, wantReason: ReasonOOMKilled, wantCode: 137},
		{name: "exit, with a kill counted in the cgroup", steps: func(c *Container) int { c.exit(0, 137, at, true); return 0 },
			wantReason: ReasonOOMKilled, wantCode: 137},
		{name: "exit, then the OOM event", steps: func(c *Container) int {
			c.exit(0, 137, at, false)
			return b2i(c.oomKill())
		}, wantReason: ReasonOOMKilled, wantCode: 137, wantRewrite: 1},
		{name: "OOM event twice after the exit", steps: func(c *Container) int {
			c.exit(0, 137, at, false)
			return b2i(c.oomKill()) + b2i(c.oomKill())
		}, wantReason: ReasonOOMKilled, wantCode: 137, wantRewrite: 1},
	}
	for _, tc := range cases {
		c := &Container{Record: Record{Status: Status{State: StateRunning}}}
		rewrites := tc.steps(c)
		if c.State != StateExited || c.Reason != tc.wantReason || c.ExitCode != tc.wantCode || rewrites != tc.wantRewrite {
			t.Errorf("%s: state %s, reason %q, exit %d, %d rewrites; want exited, %q, %d, %d rewrites",
				tc.name, c.State, c.Reason, c.ExitCode, rewrites, tc.wantReason, tc.wantCode, tc.wantRewrite)
		}
	}
	created := &Container{Record: Record{Status: Status{State: StateCreated}}}
	if created.oomKill() || created.Reason != "" {
		t.Errorf("an OOM event for a container never started changed it: %+v", created.Record)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestProcessStart(t *testing.T) {
	got := processStart(uint32(os.Getpid()))
	if d := time.Since(got); d < 0 || d > time.Hour {
		t.Errorf("this test process started %s ago, by processStart", d)
	}
}

func TestBundleRace(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"no error", nil, false},
		{"task exists (settled apart)", fmt.Errorf("task abc: %w", errdefs.ErrAlreadyExists), false},
		{"bundle in the way", errors.New("failed to create shim task: mkdir /run/containerd/io.containerd.runtime.v2.task/k8s/abc: file exists: unknown"), true},
		{"bundle removed under the shim (containerd 1.6)", errors.New("failed to start shim: start failed: io.containerd.runc.v2: getwd: no such file or directory: exit status 1"), true},
		{"bundle removed under the create (containerd 1.6)", errors.New("failed to create shim task: mkdir /run/containerd/io.containerd.runtime.v2.task/k8s/abc/rootfs: no such file or directory: not found"), true},
		{"a missing file of the container's own", errors.New("OCI runtime create failed: mount /data/x to rootfs at /x: no such file or directory"), false},
		{"runc refuses the process", errors.New(`OCI runtime create failed: runc create failed: unable to start container process: exec: "nosuch": executable file not found in $PATH`), false},
		{"containerd away", errdefs.ErrUnavailable, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := bundleRace("abc", tc.err); got != tc.want {
				t.Errorf("bundleRace(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
