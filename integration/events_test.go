//go:build integration

package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// GetContainerEvents streams each lifecycle change of a pod and its
// container once, in order, with the pod's status attached.
func TestContainerEvents(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := rt.GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	// Sent once peapod has subscribed: every event after it is streamed.
	if _, err := stream.Header(); err != nil {
		t.Fatalf("GetContainerEvents' header: %v", err)
	}
	got := make(chan *runtime.ContainerEventResponse, 100)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				close(got)
				return
			}
			got <- ev
		}
	}()

	cfg := e.podConfig("events")
	sbID := runPod(t, rt, cfg)
	ctrID := startContainer(t, rt, sbID, cfg, busybox("app", "sleep 3600"))
	pctx := podCtx(t)
	if _, err := rt.StopPodSandbox(pctx, &runtime.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RemovePodSandbox(pctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatal(err)
	}

	name := map[string]string{sbID: "pod", ctrID: "ctr"}
	want := []string{
		"pod CONTAINER_CREATED_EVENT", "pod CONTAINER_STARTED_EVENT",
		"ctr CONTAINER_CREATED_EVENT", "ctr CONTAINER_STARTED_EVENT",
		"ctr CONTAINER_STOPPED_EVENT", "pod CONTAINER_STOPPED_EVENT",
		"ctr CONTAINER_DELETED_EVENT", "pod CONTAINER_DELETED_EVENT",
	}
	var seen []string
	deadline := time.After(30 * time.Second)
	for len(seen) < len(want) {
		select {
		case ev, ok := <-got:
			if !ok {
				t.Fatalf("event stream ended after %v", seen)
			}
			who, ours := name[ev.ContainerId]
			if !ours {
				continue
			}
			seen = append(seen, fmt.Sprintf("%s %s", who, ev.ContainerEventType))
			last := seen[len(seen)-1]
			if ev.CreatedAt == 0 {
				t.Errorf("%s: no timestamp", last)
			}
			deleted := ev.ContainerEventType == runtime.ContainerEventType_CONTAINER_DELETED_EVENT && who == "pod"
			if !deleted && ev.PodSandboxStatus.GetId() != sbID {
				t.Errorf("%s: pod status %v, want the status of %s", last, ev.PodSandboxStatus, sbID)
			}
		case <-deadline:
			t.Fatalf("events so far %v, want %v", seen, want)
		}
	}
	if !slices.Equal(seen, want) {
		t.Errorf("events = %v\nwant     %v", seen, want)
	}
}
