package server

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListImages lists images, optionally only the one a filter names.
func (s *Service) ListImages(ctx context.Context, r *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	if name := r.GetFilter().GetImage().GetImage(); name != "" {
		img, err := s.images.Get(ctx, name)
		if err != nil {
			return &runtime.ListImagesResponse{}, nil //nolint:nilerr // no match is an empty list
		}
		return &runtime.ListImagesResponse{Images: []*runtime.Image{s.toCRIImage(img)}}, nil
	}
	imgs, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*runtime.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, s.toCRIImage(img))
	}
	return &runtime.ListImagesResponse{Images: out}, nil
}
