package server

import (
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamChunk is the most items one message of a streamed list carries.
// Streamed lists exist so that a node with very many pods, containers or
// images stays under gRPC's message size limit, which one List answer can
// pass.
const streamChunk = 500

// sendChunks sends items in messages of at most streamChunk items; nothing
// for no items.
func sendChunks[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), streamChunk)
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// StreamPodSandboxes is ListPodSandbox, streamed.
func (s *Service) StreamPodSandboxes(r *runtime.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxesResponse]) error {
	resp, err := s.ListPodSandbox(stream.Context(), &runtime.ListPodSandboxRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetItems(), func(c []*runtime.PodSandbox) error {
		return stream.Send(&runtime.StreamPodSandboxesResponse{PodSandboxes: c})
	})
}

// StreamContainers is ListContainers, streamed.
func (s *Service) StreamContainers(r *runtime.StreamContainersRequest, stream grpc.ServerStreamingServer[runtime.StreamContainersResponse]) error {
	resp, err := s.ListContainers(stream.Context(), &runtime.ListContainersRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetContainers(), func(c []*runtime.Container) error {
		return stream.Send(&runtime.StreamContainersResponse{Containers: c})
	})
}

// StreamContainerStats is ListContainerStats, streamed.
func (s *Service) StreamContainerStats(r *runtime.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtime.StreamContainerStatsResponse]) error {
	resp, err := s.ListContainerStats(stream.Context(), &runtime.ListContainerStatsRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetStats(), func(c []*runtime.ContainerStats) error {
		return stream.Send(&runtime.StreamContainerStatsResponse{ContainerStats: c})
	})
}

// StreamPodSandboxStats is ListPodSandboxStats, streamed.
func (s *Service) StreamPodSandboxStats(r *runtime.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxStatsResponse]) error {
	resp, err := s.ListPodSandboxStats(stream.Context(), &runtime.ListPodSandboxStatsRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetStats(), func(c []*runtime.PodSandboxStats) error {
		return stream.Send(&runtime.StreamPodSandboxStatsResponse{PodSandboxStats: c})
	})
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics, streamed.
func (s *Service) StreamPodSandboxMetrics(_ *runtime.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxMetricsResponse]) error {
	resp, err := s.ListPodSandboxMetrics(stream.Context(), &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetPodMetrics(), func(c []*runtime.PodSandboxMetrics) error {
		return stream.Send(&runtime.StreamPodSandboxMetricsResponse{PodSandboxMetrics: c})
	})
}

// StreamImages is ListImages, streamed.
func (s *Service) StreamImages(r *runtime.StreamImagesRequest, stream grpc.ServerStreamingServer[runtime.StreamImagesResponse]) error {
	resp, err := s.ListImages(stream.Context(), &runtime.ListImagesRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return sendChunks(resp.GetImages(), func(c []*runtime.Image) error {
		return stream.Send(&runtime.StreamImagesResponse{Images: c})
	})
}
