package container

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestValidate(t *testing.T) {
	good := func() *runtime.ContainerConfig {
		return &runtime.ContainerConfig{
			Metadata:   &runtime.ContainerMetadata{Name: "app"},
			Image:      &runtime.ImageSpec{Image: "busybox"},
			Command:    []string{"sh", "-c", "echo 'a\nb'"},
			Envs:       []*runtime.KeyValue{{Key: "A", Value: []byte("line1\nline2")}},
			WorkingDir: "/work",
			LogPath:    "app/0.log",
			Mounts:     []*runtime.Mount{{ContainerPath: "/data", HostPath: "/var/lib/data"}, {ContainerPath: "/img", Image: &runtime.ImageSpec{Image: "busybox"}}},
			Devices:    []*runtime.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rwm"}},
			Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{
				CpuQuota: -1, CpuShares: 2, OomScoreAdj: -997, CpusetCpus: "0-1,3", MemorySwapLimitInBytes: -1,
				HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB"}}, Unified: map[string]string{"memory.high": "max"},
			}},
		}
	}
	res := func(c *runtime.ContainerConfig) *runtime.LinuxContainerResources { return c.Linux.Resources }
	cases := []struct {
		name   string
		change func(*runtime.ContainerConfig)
		wantIn string
	}{
		{"valid", func(*runtime.ContainerConfig) {}, ""},
		{"no name", func(c *runtime.ContainerConfig) { c.Metadata.Name = "" }, "name"},
		{"no image", func(c *runtime.ContainerConfig) { c.Image = nil }, "image"},
		{"NUL in an argument", func(c *runtime.ContainerConfig) { c.Args = []string{"a\x00b"} }, "argument"},
		{"'=' in an env name", func(c *runtime.ContainerConfig) { c.Envs[0].Key = "A=B" }, "environment"},
		{"NUL in an env value", func(c *runtime.ContainerConfig) { c.Envs[0].Value = []byte("a\x00") }, "environment"},
		{"relative working dir", func(c *runtime.ContainerConfig) { c.WorkingDir = "work" }, "working directory"},
		{"relative mount destination", func(c *runtime.ContainerConfig) { c.Mounts[0].ContainerPath = "data" }, "mount destination"},
		{"relative host path", func(c *runtime.ContainerConfig) { c.Mounts[0].HostPath = "data" }, "mount source"},
		{"device permissions", func(c *runtime.ContainerConfig) { c.Devices[0].Permissions = "rwx" }, "permissions"},
		{"negative shares", func(c *runtime.ContainerConfig) { res(c).CpuShares = -2 }, "cpu_shares"},
		{"quota below -1", func(c *runtime.ContainerConfig) { res(c).CpuQuota = -5 }, "cpu_quota"},
		{"OOM score out of range", func(c *runtime.ContainerConfig) { res(c).OomScoreAdj = 2000 }, "oom_score_adj"},
		{"cpuset not a list", func(c *runtime.ContainerConfig) { res(c).CpusetMems = "all" }, "cpuset_mems"},
		{"unified key escaping", func(c *runtime.ContainerConfig) { res(c).Unified = map[string]string{"../x": "1"} }, "unified"},
	}
	for _, tc := range cases {
		c := good()
		tc.change(c)
		err := validate(c)
		if tc.wantIn == "" {
			if err != nil {
				t.Errorf("%s: %v, want valid", tc.name, err)
			}
			continue
		}
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.wantIn) {
			t.Errorf("%s: %v, want InvalidArgument about %s", tc.name, err, tc.wantIn)
		}
	}
}
