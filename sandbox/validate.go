package sandbox

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// validate refuses a pod sandbox config that could only fail later, deep in
// CNI or runc (with an error the kubelet cannot tell from a runtime fault),
// or that would write into a file what it must not: every refusal is
// InvalidArgument, naming the field.
func validate(cfg *runtime.PodSandboxConfig) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("pod sandbox config: "+format+": %w", append(a, errdefs.ErrInvalidArgument)...)
	}
	md := cfg.GetMetadata()
	if md.GetName() == "" || md.GetNamespace() == "" || md.GetUid() == "" {
		return bad("metadata needs a name, namespace and uid")
	}
	// They reach CNI plugins as environment (K8S_POD_NAME=…) and file names.
	for field, v := range map[string]string{"metadata.name": md.GetName(), "metadata.namespace": md.GetNamespace(), "metadata.uid": md.GetUid()} {
		if hasControl(v) {
			return bad("%s %q holds a control character", field, v)
		}
	}
	// The hostname goes into /etc/hostname, /etc/hosts and sethostname(2).
	if h := cfg.GetHostname(); hasControl(h) || strings.ContainsAny(h, " \t") || len(h) > 64 {
		return bad("hostname %q is not a host name (at most 64 characters, no spaces or control characters)", h)
	}
	// Each DNS entry becomes a line of the pod's resolv.conf.
	dns := cfg.GetDnsConfig()
	for _, s := range dns.GetServers() {
		if _, err := netip.ParseAddr(s); err != nil {
			return bad("DNS server %q is not an IP address", s)
		}
	}
	for field, list := range map[string][]string{"DNS search": dns.GetSearches(), "DNS option": dns.GetOptions()} {
		for _, v := range list {
			if v == "" || hasControl(v) || strings.ContainsAny(v, " \t") {
				return bad("%s %q is empty or holds white space or control characters", field, v)
			}
		}
	}
	if dir := cfg.GetLogDirectory(); dir != "" && (!filepath.IsAbs(dir) || hasControl(dir)) {
		return bad("log directory %q is not an absolute path", dir)
	}
	for _, pm := range cfg.GetPortMappings() {
		if pm.GetContainerPort() < 0 || pm.GetContainerPort() > 65535 || pm.GetHostPort() < 0 || pm.GetHostPort() > 65535 {
			return bad("port mapping %d→%d is out of range", pm.GetHostPort(), pm.GetContainerPort())
		}
		// CNI's portmap refuses container port 0 at ADD and at DEL alike:
		// a pod let through with it could never have its network torn down.
		if pm.GetHostPort() > 0 && pm.GetContainerPort() == 0 {
			return bad("port mapping publishes host port %d to container port 0", pm.GetHostPort())
		}
		if _, ok := runtime.Protocol_name[int32(pm.GetProtocol())]; !ok {
			return bad("port mapping protocol %d is unknown", pm.GetProtocol())
		}
		if ip := pm.GetHostIp(); ip != "" {
			if _, err := netip.ParseAddr(ip); err != nil {
				return bad("port mapping host IP %q is not an IP address", ip)
			}
		}
	}
	if err := validateSysctls(cfg); err != nil {
		return bad("%v", err)
	}
	if cp := cfg.GetLinux().GetCgroupParent(); hasControl(cp) || strings.Contains(cp, "..") {
		return bad("cgroup parent %q is not a cgroup path", cp)
	}
	return nil
}

// validateSysctls accepts only sysctls in a namespace the pod has of its
// own (runc refuses the others when it creates the pause container): the
// IPC namespace's kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.*
// unless the pod uses the host's IPC, the UTS namespace's names, and net.*
// unless the pod uses the host's network.
func validateSysctls(cfg *runtime.PodSandboxConfig) error {
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	ipc := map[string]bool{"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
		"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true}
	for k, v := range cfg.GetLinux().GetSysctls() {
		if hasControl(k) || hasControl(v) {
			return fmt.Errorf("sysctl %q=%q holds a control character", k, v)
		}
		name := strings.ReplaceAll(k, "/", ".")
		switch {
		case ipc[name] || strings.HasPrefix(name, "fs.mqueue."):
			if ns.GetIpc() == runtime.NamespaceMode_NODE {
				return fmt.Errorf("sysctl %s needs the pod's own IPC namespace, and it uses the host's", k)
			}
		case name == "kernel.domainname" || name == "kernel.hostname":
			if ns.GetNetwork() == runtime.NamespaceMode_NODE {
				return fmt.Errorf("sysctl %s needs the pod's own UTS namespace, and it uses the host's", k)
			}
		case strings.HasPrefix(name, "net."):
			if ns.GetNetwork() == runtime.NamespaceMode_NODE {
				return fmt.Errorf("sysctl %s needs the pod's own network namespace, and it uses the host's", k)
			}
		default:
			return fmt.Errorf("sysctl %s is not namespaced: a pod cannot set it", k)
		}
	}
	return nil
}

// hasControl reports whether s holds an ASCII control character (NUL,
// newline, …), which no name, path or file line peapod makes may hold.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
