package sandbox

import (
	"testing"

	"github.com/peapod-cri/peapod/network"
)

func TestBandwidth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		want    *network.Bandwidth
		wantErr bool
	}{
		{"none", map[string]string{"other": "x"}, nil, false},
		{"ingress decimal", map[string]string{ingressBandwidthAnnotation: "10M"},
			&network.Bandwidth{IngressRate: 10_000_000, IngressBurst: 10_000_000}, false},
		{"egress binary", map[string]string{egressBandwidthAnnotation: "1Mi"},
			&network.Bandwidth{EgressRate: 1 << 20, EgressBurst: 1 << 20}, false},
		{"both, plain and fractional", map[string]string{ingressBandwidthAnnotation: "500000", egressBandwidthAnnotation: "1.5k"},
			&network.Bandwidth{IngressRate: 500000, IngressBurst: 500000, EgressRate: 1500, EgressBurst: 1500}, false},
		{"burst capped", map[string]string{ingressBandwidthAnnotation: "10G"},
			&network.Bandwidth{IngressRate: 10_000_000_000, IngressBurst: 1<<31 - 1}, false},
		{"garbage", map[string]string{ingressBandwidthAnnotation: "fast"}, nil, true},
		{"negative", map[string]string{egressBandwidthAnnotation: "-1M"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bandwidth(tc.ann)
			if (err != nil) != tc.wantErr {
				t.Fatalf("bandwidth(%v) error = %v, want error %v", tc.ann, err, tc.wantErr)
			}
			if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Fatalf("bandwidth(%v) = %+v, want %+v", tc.ann, got, tc.want)
			}
		})
	}
}
