package record

import (
	"strings"

	clabels "github.com/containerd/containerd/v2/pkg/labels"
	"k8s.io/klog/v2"
)

// Kinds of containerd container, as containerd's CRI labels them.
const (
	KindSandbox   = "sandbox"
	KindContainer = "container"
)

// criKindLabel is the label containerd's CRI gives each of its containers.
// Tools that read containerd directly rely on it: cAdvisor, for one,
// reports network statistics for a "sandbox" only.
const criKindLabel = "io.cri-containerd.kind"

// ownPrefix is the label namespace peapod keeps for itself.
const ownPrefix = "io.peapod."

// Labels are the labels of a containerd container peapod makes, as
// containerd's CRI builds them: the image config's labels, then the CRI
// config's over them, then the kind, so that tools reading containerd
// (cAdvisor, ctr) see a pod's and a container's Kubernetes names; then
// peapod's own, which nothing overrides. A label in containerd's reserved
// namespaces (containerd.io/, whose garbage-collection labels containerd
// acts on; io.cri-containerd.) or in peapod's is not copied, and neither is
// one containerd would refuse (no key, or over 4096 bytes): the CRI labels are kept
// whole in the record, which is what the CRI answers from.
func Labels(kind string, criLabels, imageLabels, own map[string]string) map[string]string {
	labels := make(map[string]string, len(imageLabels)+len(criLabels)+len(own)+1)
	copyLabels := func(from map[string]string, source string) {
		for k, v := range from {
			if clabels.IsReserved(k) || strings.HasPrefix(k, ownPrefix) {
				klog.V(4).InfoS("Not copying a label in a reserved namespace to containerd", "source", source, "key", k)
				continue
			}
			if k == "" {
				klog.V(4).InfoS("Not copying a label with no key to containerd", "source", source)
				continue
			}
			if err := clabels.Validate(k, v); err != nil {
				klog.V(4).InfoS("Not copying a label containerd would refuse", "source", source, "err", err)
				continue
			}
			labels[k] = v
		}
	}
	copyLabels(imageLabels, "image")
	copyLabels(criLabels, "config")
	labels[criKindLabel] = kind
	for k, v := range own {
		labels[k] = v
	}
	return labels
}
