package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/eventbus"
	"github.com/peapod-cri/peapod/sandbox"
)

// noSandboxes knows no sandbox.
type noSandboxes struct{ Sandboxes }

func (noSandboxes) Get(_ context.Context, id string) (sandbox.Sandbox, error) {
	return sandbox.Sandbox{}, fmt.Errorf("sandbox %s: %w", id, errdefs.ErrNotFound)
}

// An event published once GetContainerEvents has sent its header reaches
// the client: the header is sent once the subscription is in place, so a
// client that waits for it loses no event to a subscription still being
// made.
func TestContainerEventsAfterTheHeader(t *testing.T) {
	svc := newTestService(nil, nil)
	svc.events, svc.sandboxes = &eventbus.Bus{}, noSandboxes{}
	conn := serveBufconn(t, nil, svc.Register)
	ctx := callContext(t)
	stream, err := runtime.NewRuntimeServiceClient(conn).GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatalf("GetContainerEvents sent no header: %v", err)
	}
	svc.events.Publish(eventbus.Event{ContainerID: "c1", SandboxID: "gone", Type: eventbus.Created, At: time.Now()})
	ev, err := stream.Recv()
	if err != nil {
		t.Fatalf("GetContainerEvents after its header: %v", err)
	}
	if ev.ContainerId != "c1" || ev.ContainerEventType != runtime.ContainerEventType_CONTAINER_CREATED_EVENT || ev.PodSandboxStatus != nil {
		t.Errorf("event = %v, want c1 created, with no pod status", ev)
	}
}
