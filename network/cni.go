package network

import (
	"context"
	"fmt"
	"slices"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"
)

// ifName is the pod's interface inside its network namespace.
const ifName = "eth0"

// loopbackConf brings up "lo" in every pod network namespace; pod networks
// do not configure it themselves.
var loopbackConf = []byte(`{"cniVersion":"1.0.0","name":"cni-loopback","plugins":[{"type":"loopback"}]}`)

// Pod is what CNI needs to know of a pod sandbox.
type Pod struct {
	ID, Name, Namespace, UID string
	// NetNS is the path of the pod's pinned network namespace.
	NetNS        string
	PortMappings []PortMapping
	DNS          *DNS
	Bandwidth    *Bandwidth
	// PodCIDRs are the node's pod CIDRs, passed as ipRanges (Setup fills them in).
	PodCIDRs []string
}

// PortMapping is a hostPort, passed to plugins with the portMappings capability.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// DNS is the pod's DNS configuration, for plugins with the dns capability.
type DNS struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// Bandwidth limits the pod's traffic, for plugins with the bandwidth capability.
type Bandwidth struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// Result is what setting up a pod's network gave it.
type Result struct {
	// Network is the name of the CNI network the pod was attached to.
	Network string `json:"network"`
	// IPs are the pod's addresses, the primary (IPv4 where there is one) first.
	IPs []string `json:"ips"`
}

func (m *Manager) cni() *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir(m.binDirs, m.cacheDir, nil)
}

func (p *Pod) runtimeConf() *libcni.RuntimeConf {
	caps := map[string]any{}
	if len(p.PortMappings) > 0 {
		caps["portMappings"] = p.PortMappings
	}
	if p.DNS != nil {
		caps["dns"] = p.DNS
	}
	if p.Bandwidth != nil {
		caps["bandwidth"] = p.Bandwidth
	}
	if len(p.PodCIDRs) > 0 {
		caps["ipRanges"] = ipRanges(p.PodCIDRs)
	}
	return &libcni.RuntimeConf{
		ContainerID: p.ID,
		NetNS:       p.NetNS,
		IfName:      ifName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ID},
			{"K8S_POD_UID", p.UID},
		},
		CapabilityArgs: caps,
	}
}

// Setup attaches the pod's network namespace to the pod network (CNI ADD)
// and brings up its loopback interface.
func (m *Manager) Setup(ctx context.Context, pod Pod) (*Result, error) {
	m.mu.Lock()
	err := m.refresh()
	list := m.current
	m.loadPodCIDRs()
	pod.PodCIDRs = m.podCIDRs
	m.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("pod network is not ready: %w", err)
	}
	cni := m.cni()
	lo, loRT, err := loopback(&pod)
	if err != nil {
		return nil, err
	}
	// The loopback and the pod network touch different interfaces, and
	// libcni caches their results under different names: one at a time
	// would only add the loopback plugin's run to every pod start.
	var loopbackAdd errgroup.Group
	loopbackAdd.Go(func() error {
		if _, err := cni.AddNetworkList(ctx, lo, loRT); err != nil {
			return fmt.Errorf("setting up loopback of pod %s: %w", pod.ID, err)
		}
		return nil
	})
	res, err := cni.AddNetworkList(ctx, list, pod.runtimeConf())
	if loErr := loopbackAdd.Wait(); loErr != nil {
		return nil, loErr
	}
	if err != nil {
		return nil, fmt.Errorf("CNI network %q: ADD for pod %s: %w", list.Name, pod.ID, err)
	}
	r100, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("CNI network %q: result for pod %s: %w", list.Name, pod.ID, err)
	}
	return &Result{Network: list.Name, IPs: podIPs(r100)}, nil
}

// podIPs returns the addresses on interfaces inside the pod's namespace,
// IPv4 first.
func podIPs(r *types100.Result) []string {
	var v4, v6 []string
	for _, ip := range r.IPs {
		if ip.Interface != nil {
			i := *ip.Interface
			if i < 0 || i >= len(r.Interfaces) || r.Interfaces[i].Sandbox == "" {
				continue // a host-side interface, such as the bridge
			}
		}
		if ip.Address.IP.To4() != nil {
			v4 = append(v4, ip.Address.IP.String())
		} else {
			v6 = append(v6, ip.Address.IP.String())
		}
	}
	return slices.Concat(v4, v6)
}

// Teardown detaches the pod from the network it was attached to (CNI DEL),
// with the configuration used at ADD when libcni cached it, else the current
// one. It is idempotent: a pod already torn down, a network namespace that is
// gone, or no pod network at all is not an error.
func (m *Manager) Teardown(ctx context.Context, pod Pod, network string) error {
	// IPAM plugins parse their ranges on DEL too: pass the pod CIDRs again.
	pod.PodCIDRs = m.PodCIDRs()
	rt := pod.runtimeConf()
	if pod.NetNS != "" && !isNetNS(pod.NetNS) {
		rt.NetNS = "" // plugins release what they hold (IPs, rules) without it
	}
	cni := m.cni()
	list, err := m.teardownConfig(cni, network, rt)
	if err != nil {
		return err
	}
	// The loopback's DEL does nothing in the namespace, but lets libcni drop
	// the result it cached at ADD: one file per pod ever made otherwise. It
	// runs beside the pod network's, as at ADD.
	lo, loRT, err := loopback(&pod)
	if err != nil {
		return err
	}
	loRT.NetNS = rt.NetNS
	var loopbackDel errgroup.Group
	loopbackDel.Go(func() error {
		if err := cni.DelNetworkList(ctx, lo, loRT); err != nil {
			return fmt.Errorf("CNI loopback: DEL for pod %s: %w", pod.ID, err)
		}
		return nil
	})
	if list != nil {
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			_ = loopbackDel.Wait()
			return fmt.Errorf("CNI network %q: DEL for pod %s: %w", list.Name, pod.ID, err)
		}
	}
	return loopbackDel.Wait()
}

// isNetNS reports whether path is a mounted network namespace. A pin that
// is gone, or a bare file left by an unmount cut short, is not one: CNI
// plugins refuse such a path, so DEL must run as if there were no netns, as
// containerd's CRI does for a closed one.
func isNetNS(path string) bool {
	ns, err := cnins.GetNS(path)
	if err != nil {
		klog.V(2).InfoS("Network namespace is gone; CNI DEL runs without it", "path", path, "err", err)
		return false
	}
	_ = ns.Close()
	return true
}

// loopback is the CNI config and runtime config that bring up a pod's "lo".
func loopback(pod *Pod) (*libcni.NetworkConfigList, *libcni.RuntimeConf, error) {
	lo, err := libcni.NetworkConfFromBytes(loopbackConf)
	if err != nil {
		return nil, nil, err
	}
	rt := pod.runtimeConf()
	rt.IfName, rt.CapabilityArgs = "lo", nil
	return lo, rt, nil
}

func (m *Manager) teardownConfig(cni *libcni.CNIConfig, network string, rt *libcni.RuntimeConf) (*libcni.NetworkConfigList, error) {
	if network != "" {
		raw, _, err := cni.GetNetworkListCachedConfig(&libcni.NetworkConfigList{Name: network}, rt)
		if err == nil && len(raw) > 0 {
			return libcni.NetworkConfFromBytes(raw)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refresh(); err != nil {
		// No network config at all: nothing can be deleted, and nothing
		// was added with a config we no longer have.
		return nil, nil
	}
	if network != "" && m.current.Name != network {
		// Deleting with another network's config would be wrong; the
		// old network's plugins are gone with their config.
		klog.InfoS("Skipping CNI DEL: the pod's network is no longer configured", "network", network, "pod", rt.ContainerID)
		return nil, nil
	}
	return m.current, nil
}
