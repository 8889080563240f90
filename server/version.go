package server

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/version"
)

// kubeAPIVersion is the version of the kubelet runtime API that the CRI
// Version call reports (fixed by the CRI; not peapod's version).
const kubeAPIVersion = "0.1.0"

// Version reports peapod's name and version, and the CRI API version it serves.
func (s *Service) Version(context.Context, *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       version.Name,
		RuntimeVersion:    version.Version,
		RuntimeApiVersion: "v1",
	}, nil
}
