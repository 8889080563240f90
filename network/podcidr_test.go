package network

import (
	"reflect"
	"slices"
	"testing"
)

func TestParsePodCIDRs(t *testing.T) {
	for in, want := range map[string][]string{
		"":                            nil,
		"10.244.0.0/24":               {"10.244.0.0/24"},
		" 10.244.0.9/24 , fd00::/64 ": {"10.244.0.0/24", "fd00::/64"},
	} {
		got, err := ParsePodCIDRs(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParsePodCIDRs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"10.244.0.0", "x/24", "10.244.0.0/24,300.1.1.1/8"} {
		if _, err := ParsePodCIDRs(bad); err == nil {
			t.Errorf("ParsePodCIDRs(%q) succeeded", bad)
		}
	}
}

// The pod CIDRs are kept across restarts and passed to CNI as ipRanges.
func TestPodCIDRsKeptAndPassed(t *testing.T) {
	cache := t.TempDir()
	m := NewManager(t.TempDir(), []string{"/nonexistent"}, cache)
	cidrs := []string{"10.244.1.0/24", "fd00:1::/64"}
	if err := m.SetPodCIDRs(cidrs); err != nil {
		t.Fatal(err)
	}
	again := NewManager(t.TempDir(), []string{"/nonexistent"}, cache)
	if got := again.PodCIDRs(); !slices.Equal(got, cidrs) {
		t.Fatalf("after a restart, PodCIDRs = %q, want %q", got, cidrs)
	}
	pod := Pod{ID: "x", PodCIDRs: cidrs}
	got := pod.runtimeConf().CapabilityArgs["ipRanges"]
	want := [][]map[string]string{{{"subnet": "10.244.1.0/24"}}, {{"subnet": "fd00:1::/64"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ipRanges = %v, want %v", got, want)
	}
	if _, ok := (&Pod{ID: "y"}).runtimeConf().CapabilityArgs["ipRanges"]; ok {
		t.Error("ipRanges passed without pod CIDRs")
	}
}
