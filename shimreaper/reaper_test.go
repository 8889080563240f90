package shimreaper

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as a fake shim: started as one, it waits (with a
// child process when asked) until it is killed.
func TestMain(m *testing.M) {
	if os.Getenv("PEAPOD_FAKE_SHIM") != "" {
		if os.Getenv("PEAPOD_FAKE_SHIM") == "with-child" {
			_ = exec.Command("sleep", "600").Start()
		}
		time.Sleep(10 * time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeShim starts a process named like a shim with the flags containerd
// gives one, in a working directory that is deleted when bundleGone.
func fakeShim(t *testing.T, ns, id, address string, bundleGone bool, mode string) int {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "containerd-shim-runc-v2")
	if err := os.Symlink(self, bin); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), id)
	if err := os.Mkdir(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-namespace", ns, "-id", id, "-address", address)
	cmd.Dir = bundle
	cmd.Env = append(os.Environ(), "PEAPOD_FAKE_SHIM="+mode)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("pkill", "-KILL", "-P", strconv.Itoa(cmd.Process.Pid)).Run()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if bundleGone {
		if err := os.Remove(bundle); err != nil {
			t.Fatal(err)
		}
	}
	if mode == "with-child" { // wait for it to start its child
		pid := strconv.Itoa(cmd.Process.Pid)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			// A child is listed by the thread that forked it, and is the
			// fake shim's copy until it has run sleep.
			threads, _ := filepath.Glob("/proc/" + pid + "/task/*/children")
			if slices.ContainsFunc(threads, func(f string) bool {
				b, _ := os.ReadFile(f)
				for _, child := range strings.Fields(string(b)) {
					if cmd, _ := os.ReadFile("/proc/" + child + "/cmdline"); strings.HasPrefix(string(cmd), "sleep\x00") {
						return true
					}
				}
				return false
			}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the fake shim %s started no child in 10s", pid)
			}
		}
	}
	return cmd.Process.Pid
}

func TestReaper(t *testing.T) {
	const ns, addr = "k8s.peapod.test", "/run/test/containerd.sock"
	orphan := fakeShim(t, ns, "orphan", addr, true, "plain")
	live := fakeShim(t, ns, "live", addr, false, "plain")
	otherNS := fakeShim(t, "k8s.io", "other-ns", addr, true, "plain")
	otherCtrd := fakeShim(t, ns, "other-containerd", "/run/other/containerd.sock", true, "plain")
	holding := fakeShim(t, ns, "holding", addr, true, "with-child")

	pids := func(shims []Shim) []int {
		var out []int
		for _, s := range shims {
			out = append(out, s.PID)
		}
		return out
	}
	if got := pids(Orphans("/proc", ns, "unix://"+addr)); !slices.Equal(got, []int{orphan}) {
		t.Fatalf("Orphans = %v, want only the orphan %d (live %d, other namespace %d, other containerd %d, holding a process %d)",
			got, orphan, live, otherNS, otherCtrd, holding)
	}

	r := &Reaper{ProcRoot: "/proc", Namespace: ns, Address: addr}
	if killed := r.Sweep(); len(killed) != 0 {
		t.Fatalf("first sweep killed %v: an orphan must be seen twice", killed)
	}
	if killed := pids(r.Sweep()); !slices.Equal(killed, []int{orphan}) {
		t.Fatalf("second sweep killed %v, want [%d]", killed, orphan)
	}
	deadline := time.Now().Add(5 * time.Second)
	for slices.Contains(pids(Orphans("/proc", ns, addr)), orphan) {
		if time.Now().After(deadline) {
			t.Fatal("the orphan still runs after it was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range []int{live, otherNS, otherCtrd, holding} {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
			t.Errorf("process %d was not an orphan of this containerd, but is gone", pid)
		}
	}
}

func TestShimClosed(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("failed to delete task: ttrpc: closed"), true},
		{fmt.Errorf("deleting task of container abc: %w", errors.New("failed to delete task: ttrpc: closed")), true},
		{errors.New("failed to delete task: not found"), false},
		{errors.New("error reading from server: EOF"), false},
	} {
		if got := ShimClosed(tc.err); got != tc.want {
			t.Errorf("ShimClosed(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
