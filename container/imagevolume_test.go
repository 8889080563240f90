package container

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/runtimehandler"
	"github.com/peapod-cri/peapod/sandbox"
)

func TestCleanSubPath(t *testing.T) {
	cases := []struct {
		in, want string
		invalid  bool
	}{
		{in: "", want: "."},
		{in: "etc", want: "etc"},
		{in: "usr/share/", want: "usr/share"},
		{in: "./a//b/.", want: "a/b"},
		{in: "a..b/c...", want: "a..b/c..."},
		{in: "..", invalid: true},
		{in: "../etc", invalid: true},
		{in: "a/../../etc", invalid: true},
		{in: "a/../b", invalid: true},
		{in: "a/..", invalid: true},
		{in: "/etc", invalid: true},
		{in: "/", invalid: true},
		{in: "a\x00b", invalid: true},
	}
	for _, tc := range cases {
		got, err := cleanSubPath(tc.in)
		if tc.invalid {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("cleanSubPath(%q) = %q, %v; want InvalidArgument", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanSubPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestResolveSubPath resolves sub paths in a tree standing for an image,
// beside a directory standing for the host, which no sub path may reach.
func TestResolveSubPath(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "image")
	host := filepath.Join(base, "host")
	for _, d := range []string{"etc/conf.d", "usr/lib", "data", host} {
		if !filepath.IsAbs(d) {
			d = filepath.Join(root, d)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "group"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"lib":        "usr/lib",       // relative, within
		"abs":        "/usr/lib",      // absolute: the image's /usr/lib
		"up":         "../../..",      // climbs out: stops at the image's root
		"hostlink":   host,            // the host's directory, by absolute path: the image has none
		"toparent":   "../host",       // the host's directory, relatively
		"data/up":    "../etc/conf.d", // relative, within, from a subdirectory
		"filelink":   "etc/group",     // a file
		"dangling":   "no/such/dir",   // nothing
		"etc/loop":   "loop",          // itself
		"data/abs-e": "/etc",          // absolute, from a subdirectory
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		sub  string
		want string // relative to root; "" with invalid
		// invalid: an InvalidArgument error is wanted.
		invalid bool
	}{
		{sub: ".", want: "."},
		{sub: "etc", want: "etc"},
		{sub: "etc/conf.d", want: "etc/conf.d"},
		{sub: "lib", want: "usr/lib"},
		{sub: "abs", want: "usr/lib"},
		{sub: "up", want: "."},
		{sub: "up/etc", want: "etc"},
		{sub: "data/up", want: "etc/conf.d"},
		{sub: "data/abs-e", want: "etc"},
		{sub: "hostlink", invalid: true},
		{sub: "toparent", invalid: true},
		{sub: "etc/group", invalid: true},
		{sub: "filelink", invalid: true},
		{sub: "dangling", invalid: true},
		{sub: "no-such-dir", invalid: true},
		{sub: "etc/loop", invalid: true},
	}
	for _, tc := range cases {
		got, err := resolveSubPath(root, tc.sub)
		if tc.invalid {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("resolveSubPath(%q) = %q, %v; want InvalidArgument", tc.sub, got, err)
			}
			continue
		}
		want := filepath.Join(root, tc.want)
		if err != nil || got != want {
			t.Errorf("resolveSubPath(%q) = %q, %v; want %q", tc.sub, got, err, want)
		}
	}
}

func TestExtraMountOptions(t *testing.T) {
	cases := []struct {
		in, want []string
		invalid  bool
	}{
		{in: nil, want: nil},
		{in: []string{"noexec"}, want: []string{"noexec"}},
		{in: []string{"nosuid", "nodev", "noexec", "nodev"}, want: []string{"nosuid", "nodev", "noexec"}},
		{in: []string{"rw"}, invalid: true},
		{in: []string{"noexec", "suid"}, invalid: true},
		{in: []string{"rshared"}, invalid: true},
		{in: []string{"NOEXEC"}, invalid: true},
		{in: []string{""}, invalid: true},
	}
	for _, tc := range cases {
		got, err := extraMountOptions(&runtime.Mount{ContainerPath: "/x", MountOptions: tc.in})
		if tc.invalid {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("extraMountOptions(%q) = %q, %v; want InvalidArgument", tc.in, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("extraMountOptions(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestMountsOfImageVolumes checks the OCI mounts made of CRI mounts: image
// volumes bound read-only from their prepared source, extra options on
// every bind mount.
func TestMountsOfImageVolumes(t *testing.T) {
	dir := t.TempDir()
	hostDir := filepath.Join(dir, "host")
	m := &Manager{sandboxes: sandbox.New(nil, nil, nil, sandbox.Config{RootDir: dir, StateDir: dir})}
	sb := &sandbox.Sandbox{Record: sandbox.Record{Metadata: sandbox.Metadata{ID: "sb"}}, Config: &runtime.PodSandboxConfig{}}
	img := &runtime.ImageSpec{Image: "registry.example/img:1"}
	vols := []ImageVolume{
		{Mount: 1, Source: "/state/containers/c/image-volumes/1"},
		{Mount: 2, Source: "/state/containers/c/image-volumes/2/etc"},
	}
	cfg := &runtime.ContainerConfig{Mounts: []*runtime.Mount{
		{ContainerPath: "/host", HostPath: hostDir, MountOptions: []string{"noexec", "nosuid"}},
		{ContainerPath: "/img", Image: img, MountOptions: []string{"nodev"}},
		{ContainerPath: "/sub", Image: img, Readonly: true, ImageSubPath: "etc",
			UidMappings: []*runtime.IDMapping{{HostId: 1000, Length: 10}}},
	}}
	got, err := m.mounts(cfg, sb, false, runtimehandler.Features{}, vols)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]specs.Mount{
		"/host": {Source: hostDir, Options: []string{"rbind", "rprivate", "rw", "noexec", "nosuid"}},
		"/img":  {Source: vols[0].Source, Options: []string{"rbind", "rprivate", "ro", "nodev"}},
		"/sub": {Source: vols[1].Source, Options: []string{"rbind", "rprivate", "ro"},
			UIDMappings: []specs.LinuxIDMapping{{HostID: 1000, Size: 10}}},
	}
	for _, mnt := range got {
		w, ok := want[mnt.Destination]
		if !ok {
			continue
		}
		delete(want, mnt.Destination)
		if mnt.Type != "bind" || mnt.Source != w.Source || !slices.Equal(mnt.Options, w.Options) || !slices.Equal(mnt.UIDMappings, w.UIDMappings) {
			t.Errorf("mount at %s = %+v, want source %s, options %q, UID mappings %v", mnt.Destination, mnt, w.Source, w.Options, w.UIDMappings)
		}
	}
	for dst := range want {
		t.Errorf("no mount at %s in %+v", dst, got)
	}

	// An image mount that was not prepared, a forbidden option.
	if _, err := m.mounts(cfg, sb, false, runtimehandler.Features{}, vols[:1]); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("mounts with an unprepared image mount: %v, want FailedPrecondition", err)
	}
	cfg.Mounts[1].MountOptions = []string{"rw"}
	if _, err := m.mounts(cfg, sb, false, runtimehandler.Features{}, vols); !errdefs.IsInvalidArgument(err) {
		t.Errorf("mounts with option rw on an image mount: %v, want InvalidArgument", err)
	}
}

func TestRemoveEmptyDirs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "image-volumes")
	for _, d := range []string{"0", "3"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// A file in a mount point stands for a mount left: it must survive.
	keep := filepath.Join(dir, "3", "file")
	if err := os.WriteFile(keep, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeEmptyDirs(dir); err == nil {
		t.Error("removeEmptyDirs of a directory with a file in it succeeded")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("the file is gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "0")); !os.IsNotExist(err) {
		t.Errorf("the empty subdirectory is left: %v", err)
	}
	if err := os.Remove(keep); err != nil {
		t.Fatal(err)
	}
	if err := removeEmptyDirs(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the directory is left: %v", err)
	}
	if err := removeEmptyDirs(dir); err != nil {
		t.Errorf("removeEmptyDirs of a missing directory: %v", err)
	}
}

// TestOpenInRootFallback checks the resolution kernels without openat2 get:
// within the root, or refused.
func TestOpenInRootFallback(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "image")
	if err := os.MkdirAll(filepath.Join(root, "usr", "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"lib": "usr/lib", "out": "../..", "abs": base} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		sub, want string
		err       error
	}{
		{sub: "usr", want: "usr"},
		{sub: "lib", want: "usr/lib"},
		{sub: "out", err: unix.EXDEV},
		{sub: "abs", err: unix.EXDEV},
		{sub: "file", err: unix.ENOTDIR},
		{sub: "none", err: unix.ENOENT},
	} {
		fd, err := openInRootFallback(root, tc.sub)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("openInRootFallback(%q) = %d, %v; want %v", tc.sub, fd, err, tc.err)
			}
			if err == nil {
				unix.Close(fd)
			}
			continue
		}
		if err != nil {
			t.Errorf("openInRootFallback(%q): %v", tc.sub, err)
			continue
		}
		got, err := fdPath(fd)
		unix.Close(fd)
		if want := filepath.Join(root, tc.want); err != nil || got != want {
			t.Errorf("openInRootFallback(%q) opened %q, %v; want %q", tc.sub, got, err, want)
		}
	}
}
