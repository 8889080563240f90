package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/image"
)

// ImageStatus answers an image's status, or no image (not an error) when
// the runtime does not have it.
func (s *Service) ImageStatus(ctx context.Context, r *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	name := r.GetImage().GetImage()
	if name == "" {
		return nil, fmt.Errorf("ImageStatus: no image given: %w", errdefs.ErrInvalidArgument)
	}
	img, err := s.images.Get(ctx, name)
	if errdefs.IsNotFound(err) {
		return &runtime.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtime.ImageStatusResponse{Image: s.toCRIImage(img)}
	if r.GetVerbose() {
		info, err := json.Marshal(map[string]any{
			"id": img.ID, "chainID": img.ChainID, "target": img.Target, "config": img.Config,
		})
		if err != nil {
			return nil, fmt.Errorf("encoding image info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// toCRIImage translates an image for ImageStatus and ListImages.
func (s *Service) toCRIImage(img image.Image) *runtime.Image {
	out := &runtime.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags(),
		RepoDigests: img.RepoDigests(),
		Size:        uint64(img.Size),
		Pinned:      s.images.Pinned(img),
	}
	uid, username := imageUser(img.Config.User)
	if uid != nil {
		out.Uid = &runtime.Int64Value{Value: *uid}
	}
	out.Username = username
	return out
}

// imageUser splits an image's USER ("1002", "www-data", "1003:1004",
// "www-data:1004") into a numeric uid or a user name; the group is not part
// of the CRI image status.
func imageUser(user string) (*int64, string) {
	user, _, _ = strings.Cut(user, ":")
	if user == "" {
		return nil, ""
	}
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		return &uid, ""
	}
	return nil, user
}
