package runtimehandler

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/peapod-cri/peapod/config"
)

// fakeRuntime writes an executable that answers `features` with out (and
// the given exit code) and returns its path.
func fakeRuntime(t *testing.T, out string, code int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "runtime")
	script := "#!/bin/sh\n[ \"$1\" = features ] || exit 3\ncat <<'JSON'\n" + out + "\nJSON\nexit " + string(rune('0'+code)) + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFeatures(t *testing.T) {
	const full = `{"mountOptions":["ro","rro"],"linux":{"namespaces":["mount","user"],"mountExtensions":{"idmap":{"enabled":true}}}}`
	noKernel := errors.New("not on this kernel")
	cases := []struct {
		name                string
		doc                 string
		code                int
		kernelRRO, kernelID error
		want                Features
	}{
		{name: "everything", doc: full, want: Features{RecursiveReadOnlyMounts: true, UserNamespaces: true}},
		{name: "kernel without mount_setattr", doc: full, kernelRRO: noKernel, want: Features{UserNamespaces: true}},
		{name: "kernel without idmap", doc: full, kernelID: noKernel, want: Features{RecursiveReadOnlyMounts: true}},
		{name: "runc 1.1: rro, no idmap", doc: `{"mountOptions":["rro"],"linux":{"namespaces":["user"]}}`,
			want: Features{RecursiveReadOnlyMounts: true}},
		{name: "idmap unknown", doc: `{"linux":{"namespaces":["user"],"mountExtensions":{"idmap":{}}}}`},
		{name: "idmap but no user namespace", doc: `{"linux":{"namespaces":["mount"],"mountExtensions":{"idmap":{"enabled":true}}}}`},
		{name: "no features command", doc: "unknown command features", code: 1},
		{name: "not JSON", doc: "features: yes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &Prober{
				KernelRRO:   func() error { return tc.kernelRRO },
				KernelIDMap: func() error { return tc.kernelID },
			}
			got := p.Features(context.Background(), fakeRuntime(t, tc.doc, tc.code))
			if got != tc.want {
				t.Errorf("Features = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSet(t *testing.T) {
	runc := &Handler{Name: "runc", Runtime: config.Runtime{Type: config.RuncShim, Binary: "/opt/runc", Root: "/run/r"},
		Features: Features{RecursiveReadOnlyMounts: true, UserNamespaces: true}}
	crun := &Handler{Name: "crun", Runtime: config.Runtime{Type: config.RuncShim, Binary: "/usr/bin/crun"}}
	s := NewSet("runc", runc, crun)

	for name, want := range map[string]*Handler{"": runc, "runc": runc, "crun": crun} {
		if h, err := s.Get(name); err != nil || h != want {
			t.Errorf("Get(%q) = %v, %v; want %s", name, h, err, want.Name)
		}
	}
	if _, err := s.Get("kata"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Get(kata) error = %v, want InvalidArgument", err)
	}

	st := s.Status()
	var names []string
	for _, h := range st {
		names = append(names, h.GetName())
	}
	if want := []string{"", "crun", "runc"}; !slices.Equal(names, want) {
		t.Fatalf("Status names = %q, want %q", names, want)
	}
	if f := st[0].GetFeatures(); !f.GetRecursiveReadOnlyMounts() || !f.GetUserNamespaces() {
		t.Errorf("default handler features = %v, want the default's (runc's)", f)
	}
	if f := st[1].GetFeatures(); f.GetRecursiveReadOnlyMounts() || f.GetUserNamespaces() {
		t.Errorf("crun features = %v, want none", f)
	}
}

func TestContainerOpt(t *testing.T) {
	cases := []struct {
		name     string
		rt       config.Runtime
		wantOpts *options.Options
	}{
		{"runc from PATH", config.Runtime{Type: config.RuncShim}, nil},
		{"runc binary", config.Runtime{Type: config.RuncShim, Binary: "/opt/runc"}, &options.Options{BinaryName: "/opt/runc"}},
		{"root", config.Runtime{Type: config.RuncShim, Root: "/run/x"}, &options.Options{Root: "/run/x"}},
		{"other shim", config.Runtime{Type: "io.containerd.kata.v2"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c containers.Container
			h := &Handler{Name: "x", Runtime: tc.rt}
			if err := h.ContainerOpt()(context.Background(), nil, &c); err != nil {
				t.Fatal(err)
			}
			if c.Runtime.Name != tc.rt.Type {
				t.Errorf("runtime = %q, want %q", c.Runtime.Name, tc.rt.Type)
			}
			if tc.wantOpts == nil {
				if c.Runtime.Options != nil {
					t.Errorf("options = %v, want none", c.Runtime.Options)
				}
				return
			}
			v, err := typeurl.UnmarshalAny(c.Runtime.Options)
			if err != nil {
				t.Fatal(err)
			}
			got := v.(*options.Options)
			if got.BinaryName != tc.wantOpts.BinaryName || got.Root != tc.wantOpts.Root {
				t.Errorf("options = %+v, want %+v", got, tc.wantOpts)
			}
		})
	}
}

// TestKernelProbes runs the real kernel checks: on this project's hosts
// (Linux 6.x) both must succeed, which is what lets peapod advertise the
// features at all.
func TestKernelProbes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kernel probes need root (as peapod does)")
	}
	if err := kernelRRO(); err != nil {
		t.Errorf("kernelRRO: %v", err)
	}
	if err := kernelIDMap(t.TempDir()); err != nil {
		t.Errorf("kernelIDMap: %v", err)
	}
	if err := kernelIDMap("/nonexistent/path"); err == nil {
		t.Error("kernelIDMap of a missing path succeeded")
	}
}

func TestSpecOptVersion(t *testing.T) {
	cases := []struct{ runtime, spec, want string }{
		{"", "1.3.0", "1.3.0"},              // runtime does not say
		{"1.3.0", "1.3.0", "1.3.0"},         // runc 1.5
		{"1.0.2-dev", "1.3.0", "1.0.2-dev"}, // runc 1.1
		{"1.0.0", "1.3.0", "1.0.0"},         // crun 1.8
		{"1.4.0", "1.3.0", "1.3.0"},         // newer runtime: ours stands
		{"1.10.0", "1.3.0", "1.3.0"},        // numbers, not strings
	}
	for _, tc := range cases {
		h := &Handler{Features: Features{OCIVersion: tc.runtime}}
		s := &oci.Spec{Version: tc.spec}
		if err := h.SpecOpt()(context.Background(), nil, &containers.Container{}, s); err != nil {
			t.Fatal(err)
		}
		if s.Version != tc.want {
			t.Errorf("runtime %q, spec %q: version %q, want %q", tc.runtime, tc.spec, s.Version, tc.want)
		}
	}
}

func TestOCIVersionProbe(t *testing.T) {
	dir := t.TempDir()
	write := func(name, script string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	crun := write("crun", "[ \"$1\" = --version ] || { echo 'unknown command features' >&2; exit 1; }\nprintf 'crun version 1.8.1\\nspec: 1.0.0\\n+SECCOMP\\n'\n")
	runc := write("runc", "[ \"$1\" = features ] && echo '{\"ociVersionMax\":\"1.3.0\"}' && exit 0\nprintf 'runc version 1.5.2\\nspec: 1.2.1\\n'\n")
	mute := write("mute", "exit 1\n")
	for bin, want := range map[string]string{crun: "1.0.0", runc: "1.3.0", mute: ""} {
		if got := ociVersion(context.Background(), bin); got != want {
			t.Errorf("ociVersion(%s) = %q, want %q", filepath.Base(bin), got, want)
		}
	}
}

// TestRuns covers the probe's outcomes with fake runtimes; the container it
// creates is always deleted.
func TestRuns(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		script string
		ok     bool
	}{
		"works":        {script: "exit 0", ok: true},
		"cannot":       {script: `[ "$3" = create ] && { echo 'cgroups in hybrid mode not supported' >&2; exit 1; }; exit 0`},
		"leaves state": {script: `[ "$3" = delete ] && exit 1; exit 0`},
	} {
		t.Run(name, func(t *testing.T) {
			log := filepath.Join(dir, name+".log")
			bin := filepath.Join(dir, name)
			script := "#!/bin/sh\necho \"$3\" >>'" + log + "'\n" + tc.script + "\n"
			if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			err := (&Prober{}).Runs(context.Background(), bin)
			if (err == nil) != tc.ok {
				t.Errorf("Runs = %v, want ok=%v", err, tc.ok)
			}
			calls, _ := os.ReadFile(log)
			if !strings.Contains(string(calls), "delete") {
				t.Errorf("the probe container was not deleted; calls: %q", calls)
			}
		})
	}
}
