package sandbox

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestValidate(t *testing.T) {
	good := func() *runtime.PodSandboxConfig {
		return &runtime.PodSandboxConfig{
			Metadata:     &runtime.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u-1"},
			Hostname:     "web",
			LogDirectory: "/var/log/pods/default_web_u-1",
			DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.96.0.10", "fd00::10"}, Searches: []string{"default.svc.cluster.local"}, Options: []string{"ndots:5"}},
			PortMappings: []*runtime.PortMapping{{ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"}},
			Linux: &runtime.LinuxPodSandboxConfig{
				CgroupParent: "/kubepods/burstable/podu-1",
				Sysctls:      map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_unprivileged_port_start": "0", "kernel/msgmax": "8192"},
			},
		}
	}
	hostNet := func(c *runtime.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE}}
	}
	cases := []struct {
		name   string
		change func(*runtime.PodSandboxConfig)
		wantIn string // in the error; "" when valid
	}{
		{"valid", func(*runtime.PodSandboxConfig) {}, ""},
		{"no uid", func(c *runtime.PodSandboxConfig) { c.Metadata.Uid = "" }, "metadata"},
		{"NUL in the name", func(c *runtime.PodSandboxConfig) { c.Metadata.Name = "a\x00b" }, "metadata.name"},
		{"newline in the namespace", func(c *runtime.PodSandboxConfig) { c.Metadata.Namespace = "a\nb" }, "metadata.namespace"},
		{"hostname too long", func(c *runtime.PodSandboxConfig) { c.Hostname = strings.Repeat("h", 65) }, "hostname"},
		{"hostname with a space", func(c *runtime.PodSandboxConfig) { c.Hostname = "a b" }, "hostname"},
		{"DNS server not an IP", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Servers = []string{"dns.example"} }, "DNS server"},
		{"resolv.conf injection", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Searches = []string{"a\nnameserver 6.6.6.6"} }, "DNS search"},
		{"relative log directory", func(c *runtime.PodSandboxConfig) { c.LogDirectory = "logs" }, "log directory"},
		{"port out of range", func(c *runtime.PodSandboxConfig) { c.PortMappings[0].HostPort = 70000 }, "port mapping"},
		{"host port to container port 0", func(c *runtime.PodSandboxConfig) { c.PortMappings[0].ContainerPort = 0 }, "container port 0"},
		{"unknown protocol", func(c *runtime.PodSandboxConfig) { c.PortMappings[0].Protocol = 9 }, "protocol"},
		{"bad host IP", func(c *runtime.PodSandboxConfig) { c.PortMappings[0].HostIp = "localhost" }, "host IP"},
		{"host-wide sysctl", func(c *runtime.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"vm.swappiness": "1"} }, "not namespaced"},
		{"net sysctl, host network", func(c *runtime.PodSandboxConfig) {
			hostNet(c)
			c.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
		}, "network namespace"},
		{"IPC sysctl, host IPC", func(c *runtime.PodSandboxConfig) {
			hostNet(c)
			c.Linux.Sysctls = map[string]string{"kernel.shmmax": "1"}
		}, "IPC namespace"},
		{"cgroup parent escaping", func(c *runtime.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/../../x" }, "cgroup parent"},
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
