package server

import (
	"google.golang.org/grpc/metadata"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/eventbus"
)

var eventTypes = map[eventbus.Type]runtime.ContainerEventType{
	eventbus.Created: runtime.ContainerEventType_CONTAINER_CREATED_EVENT,
	eventbus.Started: runtime.ContainerEventType_CONTAINER_STARTED_EVENT,
	eventbus.Stopped: runtime.ContainerEventType_CONTAINER_STOPPED_EVENT,
	eventbus.Deleted: runtime.ContainerEventType_CONTAINER_DELETED_EVENT,
}

// GetContainerEvents streams lifecycle events of containers and sandboxes
// from the moment its header is sent, each with its pod's status and the statuses
// of the pod's containers, as the kubelet's evented PLEG expects.
func (s *Service) GetContainerEvents(_ *runtime.GetEventsRequest, stream runtime.RuntimeService_GetContainerEventsServer) error {
	ctx := stream.Context()
	events, stop := s.events.Subscribe()
	defer stop()
	// The header tells the client that the subscription is in place: one
	// that waits for it (the stream's Header) misses no event after that.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-events:
			resp := &runtime.ContainerEventResponse{
				ContainerId:        e.ContainerID,
				ContainerEventType: eventTypes[e.Type],
				CreatedAt:          e.At.UnixNano(),
			}
			// A deleted sandbox has no status left to report.
			if sb, err := s.sandboxes.Get(ctx, e.SandboxID); err == nil {
				resp.PodSandboxStatus = sandboxStatus(sb)
				ctrs, err := s.containers.InSandbox(ctx, sb.ID)
				if err != nil {
					return err
				}
				for _, c := range ctrs {
					resp.ContainersStatuses = append(resp.ContainersStatuses, s.containerStatus(ctx, c))
				}
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}
