package server

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/network"
)

func conditions(t *testing.T, resp *runtime.StatusResponse) (rt, net *runtime.RuntimeCondition) {
	t.Helper()
	conds := resp.GetStatus().GetConditions()
	if len(conds) != 2 || conds[0].Type != runtime.RuntimeReady || conds[1].Type != runtime.NetworkReady {
		t.Fatalf("conditions = %v, want RuntimeReady and NetworkReady", conds)
	}
	return conds[0], conds[1]
}

func TestStatus(t *testing.T) {
	notReadyNet := network.Status{Reason: network.NotReadyReason, Message: "no CNI network config found in /etc/cni/net.d"}
	cases := []struct {
		name        string
		ctrdErr     error
		net         network.Status
		wantRuntime *runtime.RuntimeCondition
		wantNetwork *runtime.RuntimeCondition
	}{
		{
			name:        "all ready",
			net:         network.Status{Ready: true, Network: "podnet", File: "/etc/cni/net.d/10.conflist"},
			wantRuntime: &runtime.RuntimeCondition{Type: runtime.RuntimeReady, Status: true},
			wantNetwork: &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: true},
		},
		{
			name:        "containerd unreachable",
			ctrdErr:     errors.New("connection refused"),
			net:         network.Status{Ready: true, Network: "podnet"},
			wantRuntime: &runtime.RuntimeCondition{Type: runtime.RuntimeReady, Reason: "ContainerdUnreachable"},
			wantNetwork: &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: true},
		},
		{
			name:        "network not ready",
			net:         notReadyNet,
			wantRuntime: &runtime.RuntimeCondition{Type: runtime.RuntimeReady, Status: true},
			wantNetwork: &runtime.RuntimeCondition{Type: runtime.NetworkReady, Reason: network.NotReadyReason, Message: notReadyNet.Message},
		},
		{
			name:        "nothing ready",
			ctrdErr:     context.DeadlineExceeded,
			net:         notReadyNet,
			wantRuntime: &runtime.RuntimeCondition{Type: runtime.RuntimeReady, Reason: "ContainerdUnreachable"},
			wantNetwork: &runtime.RuntimeCondition{Type: runtime.NetworkReady, Reason: network.NotReadyReason, Message: notReadyNet.Message},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctrd := &fakeContainerd{version: client.Version{Version: "v9.9.9", Revision: "abc"}, err: tc.ctrdErr}
			s := newTestService(ctrd, fakeNetwork{status: tc.net})
			resp, err := s.Status(context.Background(), &runtime.StatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Info != nil {
				t.Errorf("non-verbose Status has Info %v", resp.Info)
			}
			rt, net := conditions(t, resp)
			if tc.ctrdErr != nil {
				// The message says which containerd and why.
				for _, w := range []string{"/run/test/containerd.sock", tc.ctrdErr.Error()} {
					if !strings.Contains(rt.Message, w) {
						t.Errorf("RuntimeReady message %q does not contain %q", rt.Message, w)
					}
				}
				rt.Message = ""
			}
			if rt.String() != tc.wantRuntime.String() {
				t.Errorf("RuntimeReady = %v, want %v", rt, tc.wantRuntime)
			}
			if net.String() != tc.wantNetwork.String() {
				t.Errorf("NetworkReady = %v, want %v", net, tc.wantNetwork)
			}
		})
	}
}

func TestStatusVerboseInfo(t *testing.T) {
	for _, reachable := range []bool{true, false} {
		ctrd := &fakeContainerd{version: client.Version{Version: "v9.9.9", Revision: "abc"}}
		if !reachable {
			ctrd.err = errors.New("connection refused")
		}
		net := network.Status{Reason: network.NotReadyReason, Message: "no CNI network config found"}
		resp, err := newTestService(ctrd, fakeNetwork{status: net}).Status(context.Background(), &runtime.StatusRequest{Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		docs := map[string]map[string]any{}
		for _, key := range []string{"config", "containerd", "network", "peapod"} { // and runtimeHandlers, a list
			v, ok := resp.Info[key]
			if !ok {
				t.Fatalf("Info lacks %q: %v", key, resp.Info)
			}
			var doc map[string]any
			if err := json.Unmarshal([]byte(v), &doc); err != nil {
				t.Fatalf("Info[%q] = %q is not a JSON object: %v", key, v, err)
			}
			docs[key] = doc
		}
		if _, ok := resp.Info["runtimeHandlers"]; !ok {
			t.Errorf("Info lacks runtimeHandlers")
		}
		if len(resp.Info) != len(docs)+1 {
			t.Errorf("Info has unexpected keys: %v", resp.Info)
		}
		if got := docs["config"]["containerd-address"]; got != "/run/test/containerd.sock" {
			t.Errorf("config doc containerd-address = %v", got)
		}
		if got := docs["containerd"]["address"]; got != "/run/test/containerd.sock" {
			t.Errorf("containerd doc address = %v", got)
		}
		if _, has := docs["containerd"]["version"]; has != reachable {
			t.Errorf("reachable=%v: containerd doc %v", reachable, docs["containerd"])
		}
		if reachable && docs["containerd"]["version"] != "v9.9.9" {
			t.Errorf("containerd doc version = %v", docs["containerd"]["version"])
		}
		if docs["network"]["reason"] != network.NotReadyReason || docs["network"]["message"] != nil {
			t.Errorf("network doc = %v, want the reason without the message (that is in the condition)", docs["network"])
		}
		if docs["peapod"]["version"] == "" {
			t.Errorf("peapod doc = %v", docs["peapod"])
		}
	}
}

// Status answers from the last probe, not by asking containerd each time.
func TestStatusFollowsProbes(t *testing.T) {
	ctrd := &fakeContainerd{}
	s := newTestService(ctrd, nil)
	ready := func() bool {
		t.Helper()
		resp, err := s.Status(context.Background(), &runtime.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		rt, _ := conditions(t, resp)
		return rt.Status
	}

	if !ready() {
		t.Fatal("not ready with containerd reachable")
	}
	ctrd.set(errors.New("down"))
	for range 3 {
		if !ready() {
			t.Fatal("Status probed containerd instead of using the last probe")
		}
	}
	if ctrd.calls != 1 {
		t.Errorf("containerd asked %d times, want 1", ctrd.calls)
	}
	s.health.probe(context.Background())
	if ready() {
		t.Error("still ready after a failed probe")
	}
	ctrd.set(nil)
	s.health.probe(context.Background())
	if !ready() {
		t.Error("not ready after a successful probe")
	}
}

// hungContainerd never answers: like a missing socket, which containerd's
// dialer waits to appear until the call's deadline.
type hungContainerd struct{}

func (hungContainerd) Version(ctx context.Context) (client.Version, error) {
	<-ctx.Done()
	return client.Version{}, ctx.Err()
}

// Before any probe has finished (just after start), Status probes itself but
// must still answer promptly when containerd does not.
func TestStatusPromptWhileContainerdHangs(t *testing.T) {
	s := newTestService(hungContainerd{}, nil)
	begin := time.Now()
	resp, err := s.Status(context.Background(), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Status took %s with containerd hung", d)
	}
	if rt, _ := conditions(t, resp); rt.Status || rt.Reason != "ContainerdUnreachable" {
		t.Errorf("RuntimeReady = %v, want not ready", rt)
	}
}

// Status advertises the runtime handlers, the default under "", with their
// features, and the runtime-wide features.
func TestStatusHandlersAndFeatures(t *testing.T) {
	resp, err := newTestService(nil, nil).Status(context.Background(), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	hs := resp.GetRuntimeHandlers()
	if len(hs) != 2 || hs[0].GetName() != "" || hs[1].GetName() != "runc" {
		t.Fatalf("RuntimeHandlers = %v, want the default (\"\") and runc", hs)
	}
	for _, h := range hs {
		if !h.GetFeatures().GetRecursiveReadOnlyMounts() || h.GetFeatures().GetUserNamespaces() {
			t.Errorf("handler %q features = %v, want the test handler's (rro only)", h.GetName(), h.GetFeatures())
		}
	}
	if !resp.GetFeatures().GetSupplementalGroupsPolicy() {
		t.Error("Features.SupplementalGroupsPolicy = false")
	}
}
