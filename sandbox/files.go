package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/containerd/containerd/v2/pkg/netns"
)

// shmSize is the size of a pod's shared /dev/shm, as the kubelet expects.
const shmSize = 64 << 20

// ResolvConfPath is the file mounted at /etc/resolv.conf in the pod's containers.
func (m *Manager) ResolvConfPath(id string) string {
	return filepath.Join(m.rootDir(id), "resolv.conf")
}

// HostnamePath is the file mounted at /etc/hostname in the pod's containers.
func (m *Manager) HostnamePath(id string) string { return filepath.Join(m.rootDir(id), "hostname") }

// HostsPath is the file mounted at /etc/hosts in the pod's containers.
func (m *Manager) HostsPath(id string) string { return filepath.Join(m.rootDir(id), "hosts") }

// ShmPath is the pod's /dev/shm ("" when the pod uses the host's IPC namespace).
func (m *Manager) ShmPath(sb *Sandbox) string {
	if sb.hostIPC() {
		return ""
	}
	return filepath.Join(m.stateDir(sb.ID), "shm")
}

func (s *Sandbox) hostIPC() bool {
	return s.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtime.NamespaceMode_NODE
}

// setupFiles writes the pod's resolv.conf, hostname and hosts files and
// mounts its /dev/shm.
func (m *Manager) setupFiles(sb *Sandbox) error {
	if err := os.MkdirAll(m.rootDir(sb.ID), 0o755); err != nil {
		return err
	}
	resolv, err := resolvConf(sb.Config.GetDnsConfig())
	if err != nil {
		return err
	}
	hostname, err := sb.Hostname()
	if err != nil {
		return err
	}
	hosts := []byte(defaultHosts)
	if sb.HostNetwork() {
		if hosts, err = os.ReadFile("/etc/hosts"); err != nil {
			return fmt.Errorf("reading the host's /etc/hosts: %w", err)
		}
	}
	for path, content := range map[string][]byte{
		m.ResolvConfPath(sb.ID): resolv,
		m.HostnamePath(sb.ID):   []byte(hostname + "\n"),
		m.HostsPath(sb.ID):      hosts,
	} {
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	if shm := m.ShmPath(sb); shm != "" {
		if err := os.MkdirAll(shm, 0o700); err != nil {
			return err
		}
		if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV,
			fmt.Sprintf("mode=1777,size=%d", shmSize)); err != nil {
			return fmt.Errorf("mounting /dev/shm of sandbox %s: %w", sb.ID, err)
		}
	}
	return nil
}

// unmountState releases the sandbox's mounts in its state directory: the
// user namespace pin and /dev/shm. What is not mounted is skipped.
func (m *Manager) unmountState(sb *Sandbox) error {
	if err := unpinUserNS(m.userNSPin(sb.ID)); err != nil {
		return err
	}
	shm := m.ShmPath(sb)
	if shm == "" {
		return nil
	}
	err := unix.Unmount(shm, unix.MNT_DETACH)
	if err != nil && err != unix.EINVAL && err != unix.ENOENT { // EINVAL: not mounted
		return fmt.Errorf("unmounting /dev/shm of sandbox %s: %w", sb.ID, err)
	}
	return nil
}

// userNSPin is where a sandbox's user namespace is pinned, if it has one.
func (m *Manager) userNSPin(id string) string { return filepath.Join(m.stateDir(id), "userns") }

// Hostname is the pod's hostname: the configured one, or the node's for a
// pod that names none (a host-network pod).
func (s *Sandbox) Hostname() (string, error) {
	if h := s.Config.GetHostname(); h != "" {
		return h, nil
	}
	return os.Hostname()
}

const defaultHosts = `127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
fe00::0	ip6-mcastprefix
fe00::1	ip6-allnodes
fe00::2	ip6-allrouters
`

// resolvConf renders the pod's DNS config; a pod without one gets the host's.
func resolvConf(dns *runtime.DNSConfig) ([]byte, error) {
	if len(dns.GetServers()) == 0 && len(dns.GetSearches()) == 0 && len(dns.GetOptions()) == 0 {
		b, err := os.ReadFile("/etc/resolv.conf")
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("reading the host's /etc/resolv.conf: %w", err)
		}
		return b, nil
	}
	var b strings.Builder
	if len(dns.GetSearches()) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.GetSearches(), " "))
	}
	for _, s := range dns.GetServers() {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.GetOptions()) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.GetOptions(), " "))
	}
	return []byte(b.String()), nil
}

// newNetNS creates a network namespace pinned under dir and returns its path.
func newNetNS(dir string) (string, error) {
	ns, err := netns.NewNetNS(dir)
	if err != nil {
		return "", err
	}
	return ns.GetPath(), nil
}

// removeNetNS unpins and removes a network namespace; a missing one is fine.
func removeNetNS(path string) error {
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	return netns.LoadNetNS(path).Remove()
}
