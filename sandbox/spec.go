package sandbox

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/network"
)

// pauseOOMScoreAdj keeps the pause container alive under memory pressure,
// as long as the host lets us lower the score that far.
const pauseOOMScoreAdj = -998

// Annotations peapod puts on the pause container's OCI spec, in the CRI's
// well-known names, for tools that look at runtime specs.
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	annotationSandboxName   = "io.kubernetes.cri.sandbox-name"
	annotationSandboxNS     = "io.kubernetes.cri.sandbox-namespace"
	annotationSandboxUID    = "io.kubernetes.cri.sandbox-uid"
)

// pauseSpec returns the spec options of a sandbox's pause container.
func (m *Manager) pauseSpec(sb *Sandbox, pause client.Image, userns *UserNS) []oci.SpecOpts {
	cfg := sb.Config
	lx := cfg.GetLinux()
	sc := lx.GetSecurityContext()
	nsOpts := sc.GetNamespaceOptions()
	md := cfg.GetMetadata()

	opts := []oci.SpecOpts{
		oci.WithImageConfig(pause),
		WithInheritedRlimits,
		oci.WithRootFSReadonly(),
		oci.WithNoNewPrivileges,
		withOOMScoreAdj(m.config.Host.OOMScoreAdj(pauseOOMScoreAdj)),
		oci.WithAnnotations(map[string]string{
			annotationContainerType: "sandbox",
			annotationSandboxID:     sb.ID,
			annotationSandboxName:   md.GetName(),
			annotationSandboxNS:     md.GetNamespace(),
			annotationSandboxUID:    md.GetUid(),
		}),
	}
	if sb.HostNetwork() {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	} else {
		opts = append(opts,
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNS}),
			oci.WithHostname(cfg.GetHostname()),
		)
	}
	if sb.HostNetwork() {
		// The UTS namespace goes with the network one: a host-network pod
		// sees the node's hostname.
		opts = append(opts, oci.WithHostNamespace(specs.UTSNamespace))
	}
	if nsOpts.GetIpc() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	} else {
		opts = append(opts, withShm(m.ShmPath(sb)))
	}
	if nsOpts.GetPid() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if parent := lx.GetCgroupParent(); parent != "" {
		opts = append(opts, oci.WithCgroup(filepath.Join(parent, sb.ID)))
	}
	if sysctls := lx.GetSysctls(); len(sysctls) > 0 {
		opts = append(opts, withSysctls(sysctls))
	}
	if u := sc.GetRunAsUser(); u != nil {
		gid := uint32(0)
		if g := sc.GetRunAsGroup(); g != nil {
			gid = uint32(g.GetValue())
		}
		opts = append(opts, oci.WithUIDGID(uint32(u.GetValue()), gid))
	}
	if sc.GetPrivileged() {
		opts = append(opts, oci.WithPrivileged)
	}
	if userns != nil {
		opts = append(opts, userns.SpecOpt(sb.UserNS))
	}
	return opts
}

// podNetwork is what CNI needs of a sandbox.
func (m *Manager) podNetwork(sb *Sandbox) network.Pod {
	cfg := sb.Config
	md := cfg.GetMetadata()
	pod := network.Pod{
		ID: sb.ID, Name: md.GetName(), Namespace: md.GetNamespace(), UID: md.GetUid(),
		NetNS: sb.NetNS,
	}
	for _, pm := range cfg.GetPortMappings() {
		if pm.GetHostPort() <= 0 {
			continue
		}
		pod.PortMappings = append(pod.PortMappings, network.PortMapping{
			HostPort:      pm.GetHostPort(),
			ContainerPort: pm.GetContainerPort(),
			Protocol:      strings.ToLower(pm.GetProtocol().String()),
			HostIP:        pm.GetHostIp(),
		})
	}
	if dns := cfg.GetDnsConfig(); dns != nil {
		pod.DNS = &network.DNS{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}
	}
	// Validated in Run; an annotation that does not parse is no limit here.
	pod.Bandwidth, _ = bandwidth(cfg.GetAnnotations())
	return pod
}

func withShm(path string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		for i, mnt := range s.Mounts {
			if mnt.Destination == "/dev/shm" {
				s.Mounts = append(s.Mounts[:i], s.Mounts[i+1:]...)
				break
			}
		}
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: "/dev/shm", Type: "bind", Source: path,
			Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
		})
		return nil
	}
}

// WithInheritedRlimits drops the default spec's resource limits (nofile
// 1024), so that pod processes inherit the node's, as the kubelet expects of
// a CRI runtime; runc also cannot set them inside a user namespace.
func WithInheritedRlimits(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Process != nil {
		s.Process.Rlimits = nil
	}
	return nil
}

func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

func withOOMScoreAdj(adj int) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.OOMScoreAdj = &adj
		return nil
	}
}
