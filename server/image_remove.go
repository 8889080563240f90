package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveImage removes an image, named by ID, tag or digest, with all its
// tags. Removing an image that does not exist succeeds.
func (s *Service) RemoveImage(ctx context.Context, r *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	name := r.GetImage().GetImage()
	if name == "" {
		return nil, fmt.Errorf("RemoveImage: no image given: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.images.Remove(ctx, name); err != nil {
		return nil, err
	}
	return &runtime.RemoveImageResponse{}, nil
}
