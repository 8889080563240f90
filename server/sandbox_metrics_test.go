package server

import (
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/sandbox"
)

// Every metric reported has a descriptor, as many label values as its
// descriptor has keys, and the value of the stat it comes from.
func TestPodMetricsMatchDescriptors(t *testing.T) {
	u := func(v uint64) *runtime.UInt64Value { return &runtime.UInt64Value{Value: v} }
	sb := sandbox.Sandbox{Record: sandbox.Record{Metadata: sandbox.Metadata{ID: "pod1"}}, Config: &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "web", Namespace: "prod"}}}
	st := &runtime.PodSandboxStats{Linux: &runtime.LinuxPodSandboxStats{
		Cpu:    &runtime.CpuUsage{UsageCoreNanoSeconds: u(3_500_000_000)},
		Memory: &runtime.MemoryUsage{UsageBytes: u(200), WorkingSetBytes: u(100)},
		Network: &runtime.NetworkUsage{
			DefaultInterface: &runtime.NetworkInterfaceUsage{Name: "eth0", RxBytes: u(10), TxBytes: u(20)},
			Interfaces:       []*runtime.NetworkInterfaceUsage{{Name: "net1", RxBytes: u(1)}},
		},
		Containers: []*runtime.ContainerStats{{
			Attributes:    &runtime.ContainerAttributes{Id: "c1", Metadata: &runtime.ContainerMetadata{Name: "app"}},
			Cpu:           &runtime.CpuUsage{UsageCoreNanoSeconds: u(2_000_000_000)},
			Memory:        &runtime.MemoryUsage{UsageBytes: u(50), WorkingSetBytes: u(40), RssBytes: u(30)},
			WritableLayer: &runtime.FilesystemUsage{UsedBytes: u(4096), InodesUsed: u(3)},
		}},
	}}
	got := podMetrics(sb, st, map[string]string{"c1": "busybox:1"})

	desc := map[string]*runtime.MetricDescriptor{}
	for _, d := range metricDescriptors {
		desc[d.GetName()] = d
	}
	values := map[string]uint64{}
	check := func(owner string, ms []*runtime.Metric) {
		for _, m := range ms {
			d, ok := desc[m.GetName()]
			if !ok {
				t.Errorf("%s: metric %s has no descriptor", owner, m.GetName())
				continue
			}
			if len(m.GetLabelValues()) != len(d.GetLabelKeys()) {
				t.Errorf("%s: %s has labels %q for keys %q", owner, m.GetName(), m.GetLabelValues(), d.GetLabelKeys())
			}
			key := owner + " " + m.GetName()
			if d.GetLabelKeys()[len(d.GetLabelKeys())-1] == "interface" {
				key += " " + m.GetLabelValues()[len(m.GetLabelValues())-1]
			}
			values[key] = m.GetValue().GetValue()
		}
	}
	check("pod", got.GetMetrics())
	if len(got.GetContainerMetrics()) != 1 {
		t.Fatalf("container metrics for %d containers, want 1", len(got.GetContainerMetrics()))
	}
	cm := got.GetContainerMetrics()[0]
	check("c1", cm.GetMetrics())
	if l := cm.GetMetrics()[0].GetLabelValues(); l[0] != "web" || l[1] != "prod" || l[2] != "app" || l[3] != "c1" || l[4] != "busybox:1" {
		t.Errorf("container labels = %q", l)
	}
	for key, want := range map[string]uint64{
		"pod container_cpu_usage_seconds_total":           3,
		"pod container_memory_working_set_bytes":          100,
		"pod container_network_receive_bytes_total eth0":  10,
		"pod container_network_transmit_bytes_total eth0": 20,
		"pod container_network_receive_bytes_total net1":  1,
		"c1 container_cpu_usage_seconds_total":            2,
		"c1 container_memory_rss":                         30,
		"c1 container_fs_usage_bytes":                     4096,
		"c1 container_fs_inodes_total":                    3,
	} {
		if got, ok := values[key]; !ok || got != want {
			t.Errorf("%s = %d (reported: %v), want %d", key, got, ok, want)
		}
	}
}
