package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/image"
)

// PullImage pulls an image and answers its ID, which every other RPC reports
// for the same image.
func (s *Service) PullImage(ctx context.Context, r *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	name := r.GetImage().GetImage()
	if name == "" {
		return nil, fmt.Errorf("PullImage: no image given: %w", errdefs.ErrInvalidArgument)
	}
	var auth *image.Auth
	if a := r.GetAuth(); a != nil {
		auth = &image.Auth{
			Username: a.Username, Password: a.Password, Auth: a.Auth,
			ServerAddress: a.ServerAddress, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken,
		}
	}
	id, err := s.images.Pull(ctx, name, auth)
	if err != nil {
		return nil, err
	}
	return &runtime.PullImageResponse{ImageRef: id}, nil
}
