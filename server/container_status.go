package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/container"
)

// ContainerStatus reports a container's state, times, exit and image.
func (s *Service) ContainerStatus(ctx context.Context, r *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	if r.GetContainerId() == "" {
		return nil, fmt.Errorf("ContainerStatus: no container ID given: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.containers.Get(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtime.ContainerStatusResponse{Status: s.containerStatus(ctx, c)}
	if r.GetVerbose() {
		info, err := json.Marshal(map[string]any{"pid": c.Pid, "sandboxID": c.SandboxID, "config": c.Config})
		if err != nil {
			return nil, fmt.Errorf("encoding container info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// containerStatus is the CRI status of a container.
func (s *Service) containerStatus(ctx context.Context, c container.Container) *runtime.ContainerStatus {
	c = c.Reported()
	cfg := c.Config
	st := &runtime.ContainerStatus{
		Id:          c.ID,
		Metadata:    cfg.GetMetadata(),
		State:       containerState(c.State),
		CreatedAt:   c.CreatedAt.UnixNano(),
		StartedAt:   unixNano(c.StartedAt),
		FinishedAt:  unixNano(c.FinishedAt),
		ExitCode:    c.ExitCode,
		Image:       s.statusImage(ctx, c),
		ImageRef:    s.imageRef(ctx, c.ImageID),
		ImageId:     c.ImageID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      cfg.GetLabels(),
		Annotations: cfg.GetAnnotations(),
		Mounts:      cfg.GetMounts(),
		LogPath:     c.LogPath,
	}
	if res := cfg.GetLinux().GetResources(); res != nil {
		st.Resources = &runtime.ContainerResources{Linux: res}
	}
	if u := c.User; u != nil {
		groups := make([]int64, len(u.Groups))
		for i, g := range u.Groups {
			groups[i] = int64(g)
		}
		st.User = &runtime.ContainerUser{Linux: &runtime.LinuxContainerUser{
			Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: groups,
		}}
	}
	return st
}

// imageRef is the image's digest reference where it has one, else its ID,
// as the kubelet reports it in pod status.
// statusImage is the image a container's status names: the one the user
// asked for (the kubelet creates containers from the image's ID, and passes
// the pod's image as user_specified_image), else a tag of the image when the
// config names it by ID, as containerd's CRI does; else the config's. (A
// repo tag alone, containerd's choice, can be another tag of the same
// image than the pod's: node conformance's image-update specs then fail.)
func (s *Service) statusImage(ctx context.Context, c container.Container) *runtime.ImageSpec {
	return statusImage(c.Config.GetImage(), s.imageNames(ctx, c.ImageID))
}

func (s *Service) imageRef(ctx context.Context, id string) string {
	return imageRef(id, s.imageNames(ctx, id))
}

// imageNames is what a container's image lends its status: the ID, the
// first tag and the first digest reference ("" when it has none).
type imageNames struct {
	found       bool
	id          string
	tag, digest string
}

func (s *Service) imageNames(ctx context.Context, id string) imageNames {
	img, err := s.images.Get(ctx, id)
	if err != nil {
		return imageNames{}
	}
	n := imageNames{found: true, id: img.ID}
	if tags := img.RepoTags(); len(tags) > 0 {
		n.tag = tags[0]
	}
	if d := img.RepoDigests(); len(d) > 0 {
		n.digest = d[0]
	}
	return n
}

// statusImage is the image a container's status shows: the one the user
// named, else, for a container made from an image ID, a tag of it.
func statusImage(spec *runtime.ImageSpec, img imageNames) *runtime.ImageSpec {
	if spec.GetUserSpecifiedImage() != "" {
		out := proto.Clone(spec).(*runtime.ImageSpec)
		out.Image = spec.GetUserSpecifiedImage()
		return out
	}
	if img.found && img.tag != "" && (spec.GetImage() == img.id || strings.HasPrefix(img.id, "sha256:"+spec.GetImage())) {
		out := proto.Clone(spec).(*runtime.ImageSpec)
		out.Image = img.tag
		return out
	}
	return spec
}

// imageRef is a container's image reference: a digest reference of its
// image when there is one, else the image ID.
func imageRef(id string, img imageNames) string {
	if img.digest != "" {
		return img.digest
	}
	return id
}

func containerState(st container.State) runtime.ContainerState {
	switch st {
	case container.StateCreated:
		return runtime.ContainerState_CONTAINER_CREATED
	case container.StateRunning:
		return runtime.ContainerState_CONTAINER_RUNNING
	case container.StateExited:
		return runtime.ContainerState_CONTAINER_EXITED
	}
	return runtime.ContainerState_CONTAINER_UNKNOWN
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
