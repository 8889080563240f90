package container

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/image"
	"github.com/peapod-cri/peapod/runtimehandler"
)

func TestReadOnlyOption(t *testing.T) {
	rro := runtimehandler.Features{RecursiveReadOnlyMounts: true}
	private := runtime.MountPropagation_PROPAGATION_PRIVATE
	cases := []struct {
		name     string
		mnt      *runtime.Mount
		features runtimehandler.Features
		want     string
		invalid  bool
	}{
		{name: "read-write", mnt: &runtime.Mount{}, want: "rw"},
		{name: "read-only", mnt: &runtime.Mount{Readonly: true}, want: "ro"},
		{name: "recursive", mnt: &runtime.Mount{Readonly: true, RecursiveReadOnly: true, Propagation: private}, features: rro, want: "rro"},
		{name: "recursive but writable", mnt: &runtime.Mount{RecursiveReadOnly: true}, features: rro, invalid: true},
		{name: "recursive host-to-container", mnt: &runtime.Mount{Readonly: true, RecursiveReadOnly: true,
			Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}, features: rro, invalid: true},
		{name: "recursive bidirectional", mnt: &runtime.Mount{Readonly: true, RecursiveReadOnly: true,
			Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL}, features: rro, invalid: true},
		{name: "recursive, handler without it", mnt: &runtime.Mount{Readonly: true, RecursiveReadOnly: true, Propagation: private}, invalid: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readOnlyOption(tc.mnt, tc.features)
			if tc.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("error = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("readOnlyOption = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestUserOptsGroups applies the user options to a spec over a root
// filesystem whose /etc/group puts uid 1000 in group 50000, as critest's
// image does, and checks the process identity under each policy.
func TestUserOptsGroups(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\ndefault-user:x:1000:1000::/home:/bin/sh\n",
		"group":  "root:x:0:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n",
	} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := image.Image{Config: ocispec.ImageConfig{User: "default-user"}}
	cases := []struct {
		name       string
		sc         *runtime.LinuxContainerSecurityContext
		uid, gid   uint32
		wantGroups []uint32
	}{
		{name: "image user, merge",
			sc:  &runtime.LinuxContainerSecurityContext{},
			uid: 1000, gid: 1000, wantGroups: []uint32{1000, 50000}},
		{name: "run as 1000 with a supplemental group, merge",
			sc:  &runtime.LinuxContainerSecurityContext{RunAsUser: &runtime.Int64Value{Value: 1000}, SupplementalGroups: []int64{1234}},
			uid: 1000, gid: 1000, wantGroups: []uint32{1000, 1234, 50000}},
		{name: "strict drops the image's groups",
			sc: &runtime.LinuxContainerSecurityContext{RunAsUser: &runtime.Int64Value{Value: 1000}, SupplementalGroups: []int64{1234},
				SupplementalGroupsPolicy: runtime.SupplementalGroupsPolicy_Strict},
			uid: 1000, gid: 1000, wantGroups: []uint32{1000, 1234}},
		{name: "run as group",
			sc: &runtime.LinuxContainerSecurityContext{RunAsUser: &runtime.Int64Value{Value: 1000}, RunAsGroup: &runtime.Int64Value{Value: 7},
				SupplementalGroupsPolicy: runtime.SupplementalGroupsPolicy_Strict},
			uid: 1000, gid: 7, wantGroups: []uint32{7}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &oci.Spec{Process: &specs.Process{}, Root: &specs.Root{Path: root}, Linux: &specs.Linux{}}
			c := &Container{}
			for _, opt := range append(userOpts(tc.sc, img), recordUser(c)) {
				if err := opt(context.Background(), nil, &containers.Container{}, s); err != nil {
					t.Fatal(err)
				}
			}
			u := s.Process.User
			groups := slices.Sorted(slices.Values(u.AdditionalGids))
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(groups, tc.wantGroups) {
				t.Errorf("user = %d:%d groups %v, want %d:%d groups %v", u.UID, u.GID, groups, tc.uid, tc.gid, tc.wantGroups)
			}
			if c.User == nil || c.User.UID != u.UID || c.User.GID != u.GID || !slices.Equal(c.User.Groups, u.AdditionalGids) {
				t.Errorf("recorded user = %+v, want the spec's %+v", c.User, u)
			}
		})
	}
}

func TestIDMappings(t *testing.T) {
	got := idMappings([]*runtime.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}})
	want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	if !slices.Equal(got, want) {
		t.Errorf("idMappings = %v, want %v", got, want)
	}
	if idMappings(nil) != nil {
		t.Error("idMappings(nil) is not nil")
	}
}

// TestCgroupAndRunMounts: a container sees its cgroups at /sys/fs/cgroup,
// read-only unless privileged, and the image's /run rather than a tmpfs;
// on a cgroup v2 host an unprivileged container gets a cgroup namespace.
func TestCgroupAndRunMounts(t *testing.T) {
	for _, tc := range []struct {
		name                string
		privileged, unified bool
		wantMode            string
		wantCgroupNS        bool
	}{
		{"v1", false, false, "ro", false},
		{"v1 privileged", true, false, "rw", false},
		{"v2", false, true, "ro", true},
		{"v2 privileged", true, true, "rw", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := &runtime.LinuxContainerSecurityContext{Privileged: tc.privileged}
			sec, err := securityOpts(sc)
			if err != nil {
				t.Fatal(err)
			}
			opts := append([]oci.SpecOpts{oci.WithoutRunMount}, cgroupNamespace(tc.privileged, tc.unified)...)
			opts = append(opts, withMounts([]specs.Mount{cgroupMount()}))
			opts = append(opts, sec...)
			var s oci.Spec
			ctx := namespaces.WithNamespace(context.Background(), "test")
			if err := oci.ApplyOpts(ctx, nil, &containers.Container{ID: "c"}, &s, append([]oci.SpecOpts{oci.WithDefaultSpec()}, opts...)...); err != nil {
				t.Fatal(err)
			}
			var cg *specs.Mount
			for i, m := range s.Mounts {
				if m.Destination == "/run" {
					t.Errorf("a %s mount hides the image's /run", m.Type)
				}
				if m.Destination == "/sys/fs/cgroup" {
					cg = &s.Mounts[i]
				}
			}
			if cg == nil || cg.Type != "cgroup" || !slices.Contains(cg.Options, tc.wantMode) {
				t.Errorf("/sys/fs/cgroup mount = %+v, want a cgroup mount, %s", cg, tc.wantMode)
			}
			hasNS := slices.ContainsFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.CgroupNamespace })
			if hasNS != tc.wantCgroupNS {
				t.Errorf("cgroup namespace: %v, want %v", hasNS, tc.wantCgroupNS)
			}
		})
	}
}

// TestMaskedAndReadonlyPaths: the paths are exactly the kubelet's, so that
// an Unmasked proc mount (empty lists) really is unmasked.
func TestMaskedAndReadonlyPaths(t *testing.T) {
	for _, tc := range []struct {
		name             string
		sc               *runtime.LinuxContainerSecurityContext
		masked, readonly []string
	}{
		{"kubelet defaults", &runtime.LinuxContainerSecurityContext{
			MaskedPaths: []string{"/proc/kcore", "/proc/keys"}, ReadonlyPaths: []string{"/proc/sys"},
		}, []string{"/proc/kcore", "/proc/keys"}, []string{"/proc/sys"}},
		{"unmasked proc mount", &runtime.LinuxContainerSecurityContext{}, nil, nil},
		{"privileged", &runtime.LinuxContainerSecurityContext{Privileged: true, MaskedPaths: []string{"/proc/kcore"}}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sec, err := securityOpts(tc.sc)
			if err != nil {
				t.Fatal(err)
			}
			var s oci.Spec
			ctx := namespaces.WithNamespace(context.Background(), "test")
			if err := oci.ApplyOpts(ctx, nil, &containers.Container{ID: "c"}, &s, append([]oci.SpecOpts{oci.WithDefaultSpec()}, sec...)...); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Linux.MaskedPaths, tc.masked) || !slices.Equal(s.Linux.ReadonlyPaths, tc.readonly) {
				t.Errorf("masked %q, read-only %q; want %q, %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, tc.masked, tc.readonly)
			}
		})
	}
}

// TestCapabilityOpts checks every combination of ALL, a default capability
// and a capability the default set lacks, in add and drop, against the rule
// containerd's CRI and CRI-O follow: add ALL, drop ALL, add the named, drop
// the named.
func TestCapabilityOpts(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "test")
	base := func(t *testing.T) *oci.Spec {
		s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	allSpec := base(t)
	if err := oci.WithAllCurrentCapabilities(ctx, nil, nil, allSpec); err != nil {
		t.Fatal(err)
	}
	all := allSpec.Process.Capabilities.Bounding
	defaults := base(t).Process.Capabilities.Bounding
	const inDefault, notDefault = "NET_RAW", "SYS_ADMIN"
	if !slices.Contains(defaults, "CAP_"+inDefault) || slices.Contains(defaults, "CAP_"+notDefault) {
		t.Fatalf("default capabilities %v: the test needs %s in them and %s not", defaults, inDefault, notDefault)
	}
	lists := [][]string{nil, {"ALL"}, {inDefault}, {notDefault}, {"all", inDefault}, {inDefault, notDefault}, {"CAP_" + notDefault}}
	for _, add := range lists {
		for _, drop := range lists {
			// containerd's rule, written out.
			want := map[string]bool{}
			for _, c := range defaults {
				want[c] = true
			}
			has := func(l []string, c string) bool {
				return slices.ContainsFunc(l, func(x string) bool { return strings.EqualFold(x, c) || strings.EqualFold(x, "CAP_"+c) })
			}
			if has(add, "ALL") {
				for _, c := range all {
					want[c] = true
				}
			}
			if has(drop, "ALL") {
				want = map[string]bool{}
			}
			for _, c := range []string{inDefault, notDefault} {
				if has(add, c) {
					want["CAP_"+c] = true
				}
			}
			for _, c := range []string{inDefault, notDefault} {
				if has(drop, c) {
					delete(want, "CAP_"+c)
				}
			}

			s := base(t)
			for _, opt := range capabilityOpts(&runtime.Capability{AddCapabilities: add, DropCapabilities: drop}) {
				if err := opt(ctx, nil, nil, s); err != nil {
					t.Fatal(err)
				}
			}
			c := s.Process.Capabilities
			for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
				got := map[string]bool{}
				for _, x := range set {
					got[x] = true
				}
				if !maps.Equal(got, want) {
					t.Errorf("add %v drop %v: %s set %v, want %v", add, drop, name, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
				}
			}
		}
	}
}
