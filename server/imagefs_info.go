package server

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageFsInfo reports the usage of the filesystem holding images. Container
// writable layers live on the same filesystem, so no separate container
// filesystem is reported.
func (s *Service) ImageFsInfo(ctx context.Context, _ *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	u, err := s.images.FsUsage(ctx)
	if err != nil {
		return nil, err
	}
	return &runtime.ImageFsInfoResponse{ImageFilesystems: []*runtime.FilesystemUsage{{
		Timestamp:  u.Timestamp.UnixNano(),
		FsId:       &runtime.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtime.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtime.UInt64Value{Value: u.InodesUsed},
	}}}, nil
}
