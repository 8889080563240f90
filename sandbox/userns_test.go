package sandbox

import (
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func podWithUserNS(ns *runtime.NamespaceOption) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: ns}}}
}

func TestUserNSOf(t *testing.T) {
	one := []*runtime.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	pod := func(u *runtime.UserNamespace) *runtime.NamespaceOption {
		return &runtime.NamespaceOption{UsernsOptions: u}
	}
	cases := []struct {
		name    string
		ns      *runtime.NamespaceOption
		want    *UserNS
		invalid bool
	}{
		{name: "no options", ns: nil},
		{name: "node", ns: pod(&runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE})},
		{name: "pod", ns: pod(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one}),
			want: &UserNS{UIDs: []specs.LinuxIDMapping{{HostID: 1000, Size: 100000}}, GIDs: []specs.LinuxIDMapping{{HostID: 1000, Size: 100000}}}},
		{name: "node with mappings", ns: pod(&runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE, Uids: one}), invalid: true},
		{name: "two mappings", ns: pod(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
			Uids: append(one, &runtime.IDMapping{ContainerId: 0, HostId: 2000, Length: 100000}), Gids: one}), invalid: true},
		{name: "no gid mapping", ns: pod(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one}), invalid: true},
		{name: "container ID 0 unmapped", ns: pod(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
			Uids: []*runtime.IDMapping{{ContainerId: 1, HostId: 1000, Length: 100000}}, Gids: one}), invalid: true},
		{name: "empty mapping", ns: pod(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
			Uids: []*runtime.IDMapping{{HostId: 1000}}, Gids: one}), invalid: true},
		{name: "container mode", ns: pod(&runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}), invalid: true},
		{name: "target mode", ns: pod(&runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}), invalid: true},
		{name: "with host network", ns: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE,
			UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one}}, invalid: true},
		{name: "with host pid", ns: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE,
			UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one}}, invalid: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UserNSOf(podWithUserNS(tc.ns))
			if tc.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("error = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && (got.UIDs[0] != tc.want.UIDs[0] || got.GIDs[0] != tc.want.GIDs[0])) {
				t.Errorf("UserNSOf = %+v, want %+v", got, tc.want)
			}
			// A container asking for what its pod has is the same; nil too.
			if !got.Same(tc.ns.GetUsernsOptions()) || !got.Same(nil) {
				t.Errorf("Same(own options) = false")
			}
		})
	}
	u, _ := UserNSOf(podWithUserNS(pod(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one})))
	other := []*runtime.IDMapping{{ContainerId: 0, HostId: 5000, Length: 100000}}
	if u.Same(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: other, Gids: other}) {
		t.Error("Same(other mappings) = true")
	}
	if u.Same(&runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}) {
		t.Error("Same(NODE) = true for a pod user namespace")
	}
	var none *UserNS
	if none.Same(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one}) {
		t.Error("Same(POD) = true for a host-userns pod")
	}
}

func TestUserNSCheckIDs(t *testing.T) {
	u := &UserNS{UIDs: []specs.LinuxIDMapping{{HostID: 100000, Size: 65536}}, GIDs: []specs.LinuxIDMapping{{HostID: 100000, Size: 1000}}}
	id := func(v int64) *runtime.Int64Value { return &runtime.Int64Value{Value: v} }
	cases := []struct {
		name     string
		ns       *UserNS
		uid, gid *runtime.Int64Value
		groups   []int64
		invalid  bool
	}{
		{name: "nothing asked", ns: u},
		{name: "root", ns: u, uid: id(0), gid: id(0)},
		{name: "last mapped IDs", ns: u, uid: id(65535), gid: id(999), groups: []int64{0, 999}},
		{name: "uid past the mapping", ns: u, uid: id(65536), invalid: true},
		{name: "huge uid", ns: u, uid: id(429496729), invalid: true},
		{name: "negative uid", ns: u, uid: id(-1), invalid: true},
		{name: "gid past the mapping", ns: u, uid: id(0), gid: id(1000), invalid: true},
		{name: "supplemental group past the mapping", ns: u, groups: []int64{5, 1000}, invalid: true},
		{name: "host user namespace maps all", ns: nil, uid: id(429496729), gid: id(1<<32 - 2), groups: []int64{1 << 31}},
		{name: "gid -1 on the host", ns: nil, uid: id(3), gid: id(-1), invalid: true},
		{name: "uid (uid_t)-1 on the host", ns: nil, uid: id(1<<32 - 1), invalid: true},
		{name: "uid past 32 bits on the host", ns: nil, uid: id(1 << 32), invalid: true},
		{name: "negative supplemental group on the host", ns: nil, groups: []int64{-5}, invalid: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ns.CheckIDs("pod", tc.uid, tc.gid, tc.groups)
			if tc.invalid != errdefs.IsInvalidArgument(err) || (!tc.invalid && err != nil) {
				t.Errorf("CheckIDs = %v, want invalid %v", err, tc.invalid)
			}
		})
	}
}
