package server

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/sandbox"
)

// The metrics peapod reports through ListPodSandboxMetrics, named and
// labelled as cAdvisor names them, so that a kubelet serving
// /metrics/cadvisor from the CRI shows the usual series.
var (
	metricLabels        = []string{"pod", "namespace", "container", "id", "image"}
	networkMetricLabels = append(append([]string{}, metricLabels...), "interface")

	metricDescriptors = []*runtime.MetricDescriptor{
		{Name: "container_cpu_usage_seconds_total", Help: "Cumulative CPU time consumed in seconds.", LabelKeys: metricLabels},
		{Name: "container_memory_usage_bytes", Help: "Current memory usage in bytes, including all memory regardless of when it was accessed.", LabelKeys: metricLabels},
		{Name: "container_memory_working_set_bytes", Help: "Current working set in bytes.", LabelKeys: metricLabels},
		{Name: "container_memory_rss", Help: "Size of RSS in bytes.", LabelKeys: metricLabels},
		{Name: "container_memory_swap", Help: "Container swap usage in bytes.", LabelKeys: metricLabels},
		{Name: "container_fs_usage_bytes", Help: "Number of bytes that are consumed by the container's writable layer.", LabelKeys: metricLabels},
		{Name: "container_fs_inodes_total", Help: "Number of inodes used by the container's writable layer.", LabelKeys: metricLabels},
		{Name: "container_network_receive_bytes_total", Help: "Cumulative count of bytes received.", LabelKeys: networkMetricLabels},
		{Name: "container_network_receive_errors_total", Help: "Cumulative count of errors encountered while receiving.", LabelKeys: networkMetricLabels},
		{Name: "container_network_transmit_bytes_total", Help: "Cumulative count of bytes transmitted.", LabelKeys: networkMetricLabels},
		{Name: "container_network_transmit_errors_total", Help: "Cumulative count of errors encountered while transmitting.", LabelKeys: networkMetricLabels},
	}
)

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics reports.
func (s *Service) ListMetricDescriptors(context.Context, *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	return &runtime.ListMetricDescriptorsResponse{Descriptors: metricDescriptors}, nil
}

// ListPodSandboxMetrics reports the metrics of every ready pod: the pod's
// own (its cgroup's CPU and memory, its network interfaces) under the
// container name "", and each of its containers'. A pod that goes away
// while it is measured is left out.
func (s *Service) ListPodSandboxMetrics(ctx context.Context, _ *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	sbs, err := s.sandboxes.List(ctx)
	if err != nil {
		return nil, err
	}
	bySandbox, err := s.containersBySandbox(ctx)
	if err != nil {
		return nil, err
	}
	resp := &runtime.ListPodSandboxMetricsResponse{}
	for _, sb := range sbs {
		if sb.State != sandbox.StateReady {
			continue
		}
		st, err := s.podSandboxStats(ctx, sb, bySandbox[sb.ID])
		if err != nil {
			klog.V(4).InfoS("Leaving a pod out of the metrics", "id", sb.ID, "err", err)
			continue
		}
		images := map[string]string{}
		for _, c := range bySandbox[sb.ID] {
			images[c.ID] = c.ImageRef
		}
		resp.PodMetrics = append(resp.PodMetrics, podMetrics(sb, st, images))
	}
	return resp, nil
}

// podMetrics turns a pod's stats into metrics; images gives each
// container's image by container ID.
func podMetrics(sb sandbox.Sandbox, st *runtime.PodSandboxStats, images map[string]string) *runtime.PodSandboxMetrics {
	md := sb.Config.GetMetadata()
	ts := time.Now().UnixNano()
	lx := st.GetLinux()
	podLabels := []string{md.GetName(), md.GetNamespace(), "", sb.ID, ""}
	out := &runtime.PodSandboxMetrics{PodSandboxId: sb.ID}
	out.Metrics = append(out.Metrics,
		metric("container_cpu_usage_seconds_total", runtime.MetricType_COUNTER, ts, podLabels, lx.GetCpu().GetUsageCoreNanoSeconds().GetValue()/uint64(time.Second)),
		metric("container_memory_usage_bytes", runtime.MetricType_GAUGE, ts, podLabels, lx.GetMemory().GetUsageBytes().GetValue()),
		metric("container_memory_working_set_bytes", runtime.MetricType_GAUGE, ts, podLabels, lx.GetMemory().GetWorkingSetBytes().GetValue()),
	)
	ifaces := lx.GetNetwork().GetInterfaces()
	if d := lx.GetNetwork().GetDefaultInterface(); d != nil {
		ifaces = append([]*runtime.NetworkInterfaceUsage{d}, ifaces...)
	}
	for _, i := range ifaces {
		l := append(append([]string{}, podLabels...), i.GetName())
		out.Metrics = append(out.Metrics,
			metric("container_network_receive_bytes_total", runtime.MetricType_COUNTER, ts, l, i.GetRxBytes().GetValue()),
			metric("container_network_receive_errors_total", runtime.MetricType_COUNTER, ts, l, i.GetRxErrors().GetValue()),
			metric("container_network_transmit_bytes_total", runtime.MetricType_COUNTER, ts, l, i.GetTxBytes().GetValue()),
			metric("container_network_transmit_errors_total", runtime.MetricType_COUNTER, ts, l, i.GetTxErrors().GetValue()),
		)
	}
	for _, cs := range lx.GetContainers() {
		a := cs.GetAttributes()
		l := []string{md.GetName(), md.GetNamespace(), a.GetMetadata().GetName(), a.GetId(), images[a.GetId()]}
		out.ContainerMetrics = append(out.ContainerMetrics, &runtime.ContainerMetrics{ContainerId: a.GetId(), Metrics: []*runtime.Metric{
			metric("container_cpu_usage_seconds_total", runtime.MetricType_COUNTER, ts, l, cs.GetCpu().GetUsageCoreNanoSeconds().GetValue()/uint64(time.Second)),
			metric("container_memory_usage_bytes", runtime.MetricType_GAUGE, ts, l, cs.GetMemory().GetUsageBytes().GetValue()),
			metric("container_memory_working_set_bytes", runtime.MetricType_GAUGE, ts, l, cs.GetMemory().GetWorkingSetBytes().GetValue()),
			metric("container_memory_rss", runtime.MetricType_GAUGE, ts, l, cs.GetMemory().GetRssBytes().GetValue()),
			metric("container_memory_swap", runtime.MetricType_GAUGE, ts, l, cs.GetSwap().GetSwapUsageBytes().GetValue()),
			metric("container_fs_usage_bytes", runtime.MetricType_GAUGE, ts, l, cs.GetWritableLayer().GetUsedBytes().GetValue()),
			metric("container_fs_inodes_total", runtime.MetricType_GAUGE, ts, l, cs.GetWritableLayer().GetInodesUsed().GetValue()),
		}})
	}
	return out
}

func metric(name string, typ runtime.MetricType, ts int64, labels []string, v uint64) *runtime.Metric {
	return &runtime.Metric{Name: name, Timestamp: ts, MetricType: typ, LabelValues: labels, Value: &runtime.UInt64Value{Value: v}}
}
