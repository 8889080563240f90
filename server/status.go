package server

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/network"
	"github.com/peapod-cri/peapod/version"
)

// runtimeNotReadyReason is the RuntimeReady condition's reason while
// containerd cannot be reached.
const runtimeNotReadyReason = "ContainerdUnreachable"

// Status reports whether the runtime (containerd) and pod networking (a
// usable CNI config) are ready. With verbose, Info carries JSON documents
// describing the configuration, containerd and the network.
func (s *Service) Status(ctx context.Context, req *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	ctrdVersion, ctrdErr := s.health.status(ctx)
	net := s.network.Status()

	runtimeReady := &runtime.RuntimeCondition{Type: runtime.RuntimeReady, Status: ctrdErr == nil}
	if ctrdErr != nil {
		runtimeReady.Reason = runtimeNotReadyReason
		runtimeReady.Message = fmt.Sprintf("containerd at %s is not reachable: %v", s.config.ContainerdAddress, ctrdErr)
	}
	networkReady := &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: net.Ready, Reason: net.Reason, Message: net.Message}

	resp := &runtime.StatusResponse{
		Status: &runtime.RuntimeStatus{
			Conditions: []*runtime.RuntimeCondition{runtimeReady, networkReady},
		},
		RuntimeHandlers: s.handlers.Status(),
		Features:        &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if req.GetVerbose() {
		info, err := s.statusInfo(ctrdVersion, ctrdErr, net)
		if err != nil {
			return nil, fmt.Errorf("encoding status info: %w", err)
		}
		resp.Info = info
	}
	return resp, nil
}

// statusInfo builds the verbose Status info: each value is a JSON document,
// which is how crictl info prints it.
func (s *Service) statusInfo(v client.Version, ctrdErr error, net network.Status) (map[string]string, error) {
	ctrd := map[string]string{
		"address":   s.config.ContainerdAddress,
		"namespace": s.config.ContainerdNamespace,
	}
	if ctrdErr == nil {
		ctrd["version"], ctrd["revision"] = v.Version, v.Revision
	}
	net.Message = "" // already in the condition
	docs := map[string]any{
		"config":          s.config,
		"containerd":      ctrd,
		"network":         net,
		"peapod":          map[string]string{"version": version.Version, "revision": version.Revision},
		"runtimeHandlers": s.handlers.List(),
	}
	info := make(map[string]string, len(docs))
	for k, doc := range docs {
		b, err := json.Marshal(doc)
		if err != nil {
			return nil, err
		}
		info[k] = string(b)
	}
	return info, nil
}
