package server

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/sandbox"
)

// PodSandboxStatus reports a pod sandbox's state, IPs and configuration.
func (s *Service) PodSandboxStatus(ctx context.Context, r *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("PodSandboxStatus: no pod sandbox ID given: %w", errdefs.ErrInvalidArgument)
	}
	sb, err := s.sandboxes.Get(ctx, r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtime.PodSandboxStatusResponse{Status: sandboxStatus(sb)}
	if r.GetVerbose() {
		info, err := json.Marshal(map[string]any{
			"pid": sb.Pid, "netns": sb.NetNS, "network": sb.Network, "state": sb.State,
			"runtimeHandler": sb.RuntimeHandler, "config": sb.Config,
		})
		if err != nil {
			return nil, fmt.Errorf("encoding sandbox info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// sandboxStatus is the CRI status of a sandbox.
func sandboxStatus(sb sandbox.Sandbox) *runtime.PodSandboxStatus {
	cfg := sb.Config
	st := &runtime.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       cfg.GetMetadata(),
		State:          sandboxState(sb.State),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: sb.RuntimeHandler,
		Linux: &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{
			Options: namespaceOptions(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()),
		}},
	}
	if !sb.HostNetwork() {
		st.Network = &runtime.PodSandboxNetworkStatus{}
		for i, ip := range sb.IPs {
			if i == 0 {
				st.Network.Ip = ip
			} else {
				st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtime.PodIP{Ip: ip})
			}
		}
	}
	return st
}

func sandboxState(st sandbox.State) runtime.PodSandboxState {
	if st == sandbox.StateReady {
		return runtime.PodSandboxState_SANDBOX_READY
	}
	return runtime.PodSandboxState_SANDBOX_NOTREADY
}

// namespaceOptions fills in the defaults of a pod's namespace options, so
// the status says what the pod really got.
func namespaceOptions(o *runtime.NamespaceOption) *runtime.NamespaceOption {
	if o == nil {
		return &runtime.NamespaceOption{}
	}
	return o
}
