package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/container"
)

// fakeContainers knows a fixed set of containers; only Get is used here.
type fakeContainers struct {
	Containers
	byID map[string]container.Container
}

func (f fakeContainers) Get(_ context.Context, id string) (container.Container, error) {
	for full, c := range f.byID {
		if strings.HasPrefix(full, id) {
			return c, nil
		}
	}
	return container.Container{}, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
}

// fakeStreaming hands out attach URLs and remembers the last request.
type fakeStreaming struct {
	Streaming
	last *runtime.AttachRequest
}

func (f *fakeStreaming) GetAttach(r *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	f.last = r
	return &runtime.AttachResponse{Url: "http://127.0.0.1:1/attach/" + r.ContainerId}, nil
}

func TestAttach(t *testing.T) {
	ctr := func(id string, state container.State, tty bool) container.Container {
		return container.Container{
			Record: container.Record{Metadata: container.Metadata{ID: id}, Status: container.Status{State: state}},
			Config: &runtime.ContainerConfig{Tty: tty, Stdin: true},
		}
	}
	containers := fakeContainers{byID: map[string]container.Container{
		"plain0123": ctr("plain0123", container.StateRunning, false),
		"term0123":  ctr("term0123", container.StateRunning, true),
		"gone0123":  ctr("gone0123", container.StateExited, false),
	}}
	cases := []struct {
		name   string
		req    *runtime.AttachRequest
		code   codes.Code
		wantID string // the full ID handed to the streaming server
	}{
		{"all streams", &runtime.AttachRequest{ContainerId: "plain0123", Stdin: true, Stdout: true, Stderr: true}, codes.OK, "plain0123"},
		{"by prefix, output only", &runtime.AttachRequest{ContainerId: "plain", Stdout: true}, codes.OK, "plain0123"},
		{"terminal", &runtime.AttachRequest{ContainerId: "term0123", Stdin: true, Stdout: true, Tty: true}, codes.OK, "term0123"},
		{"no container ID", &runtime.AttachRequest{Stdout: true}, codes.InvalidArgument, ""},
		{"no stream", &runtime.AttachRequest{ContainerId: "plain0123"}, codes.InvalidArgument, ""},
		{"terminal with stderr", &runtime.AttachRequest{ContainerId: "term0123", Stdout: true, Stderr: true, Tty: true}, codes.InvalidArgument, ""},
		{"tty to a container without one", &runtime.AttachRequest{ContainerId: "plain0123", Stdout: true, Tty: true}, codes.InvalidArgument, ""},
		{"no tty to a container with one", &runtime.AttachRequest{ContainerId: "term0123", Stdout: true}, codes.InvalidArgument, ""},
		{"unknown container", &runtime.AttachRequest{ContainerId: "nothere", Stdout: true}, codes.NotFound, ""},
		{"exited container", &runtime.AttachRequest{ContainerId: "gone0123", Stdout: true}, codes.FailedPrecondition, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream := &fakeStreaming{}
			s := &Service{containers: containers, streaming: stream}
			resp, err := s.Attach(context.Background(), tc.req)
			if got := status.Code(toGRPC(err)); got != tc.code {
				t.Fatalf("Attach = %v, want code %s", err, tc.code)
			}
			if tc.code != codes.OK {
				if stream.last != nil {
					t.Errorf("a rejected Attach reached the streaming server")
				}
				return
			}
			if stream.last == nil || stream.last.ContainerId != tc.wantID || resp.GetUrl() == "" {
				t.Errorf("streaming server got %v (URL %q), want container %s", stream.last, resp.GetUrl(), tc.wantID)
			}
		})
	}
}
