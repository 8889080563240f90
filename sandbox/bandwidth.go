package sandbox

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/peapod-cri/peapod/network"
)

// The kubelet passes a pod's traffic shaping as these annotations, in
// Kubernetes quantities of bits per second ("10M", "1Gi").
const (
	ingressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	egressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// bandwidth reads the pod's bandwidth limits for the CNI bandwidth
// capability; nil when the pod sets none. Bursts are the rate's worth of
// one second, without which the plugin's token bucket would stall.
func bandwidth(annotations map[string]string) (*network.Bandwidth, error) {
	var bw network.Bandwidth
	set := false
	for key, dst := range map[string]*uint64{ingressBandwidthAnnotation: &bw.IngressRate, egressBandwidthAnnotation: &bw.EgressRate} {
		v, ok := annotations[key]
		if !ok {
			continue
		}
		rate, err := parseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("annotation %s=%q: %w", key, v, err)
		}
		*dst, set = rate, true
	}
	if !set {
		return nil, nil
	}
	bw.IngressBurst, bw.EgressBurst = burst(bw.IngressRate), burst(bw.EgressRate)
	return &bw, nil
}

func burst(rate uint64) uint64 {
	if rate == 0 {
		return 0
	}
	return min(rate, math.MaxInt32) // the plugin takes bursts in bits, at most 2^31-1
}

// quantitySuffixes are Kubernetes' decimal and binary quantity suffixes.
var quantitySuffixes = []struct {
	suffix string
	factor float64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
	{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18},
}

// parseQuantity parses a non-negative Kubernetes quantity such as "10M",
// "1.5Gi" or "100000".
func parseQuantity(s string) (uint64, error) {
	num, factor := strings.TrimSpace(s), 1.0
	for _, q := range quantitySuffixes {
		if strings.HasSuffix(num, q.suffix) {
			num, factor = strings.TrimSuffix(num, q.suffix), q.factor
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("not a quantity like 10M or 1Gi")
	}
	return uint64(f * factor), nil
}
