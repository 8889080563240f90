package server

import (
	"context"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers lists containers, filtered by ID (or ID prefix), state,
// pod sandbox and labels.
func (s *Service) ListContainers(ctx context.Context, r *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	all, err := s.containers.List(ctx)
	if err != nil {
		return nil, err
	}
	f := r.GetFilter()
	out := make([]*runtime.Container, 0, len(all))
	// Containers share few images: each is looked up once per call.
	images := map[string]imageNames{}
	for _, c := range all {
		state := containerState(c.Reported().State)
		switch {
		case f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()),
			f.GetPodSandboxId() != "" && !strings.HasPrefix(c.SandboxID, f.GetPodSandboxId()),
			f.GetState() != nil && f.GetState().GetState() != state,
			!labelsMatch(c.Config.GetLabels(), f.GetLabelSelector()):
			continue
		}
		img, ok := images[c.ImageID]
		if !ok {
			img = s.imageNames(ctx, c.ImageID)
			images[c.ImageID] = img
		}
		out = append(out, &runtime.Container{
			Id:           c.ID,
			PodSandboxId: c.SandboxID,
			Metadata:     c.Config.GetMetadata(),
			Image:        statusImage(c.Config.GetImage(), img),
			ImageRef:     imageRef(c.ImageID, img),
			ImageId:      c.ImageID,
			State:        state,
			CreatedAt:    c.CreatedAt.UnixNano(),
			Labels:       c.Config.GetLabels(),
			Annotations:  c.Config.GetAnnotations(),
		})
	}
	return &runtime.ListContainersResponse{Containers: out}, nil
}
