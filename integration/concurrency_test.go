//go:build integration

package integration

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Twenty RunPodSandbox calls with one pod name at once: exactly one makes
// the pod, the others answer AlreadyExists, and nothing of theirs is left.
func TestConcurrentRunPodSandboxSameName(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, _ := e.serve()
	cfg := e.podConfig("same-name")
	const n = 20
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := rt.RunPodSandbox(podCtx(t), &runtime.RunPodSandboxRequest{Config: cfg})
			ids[i], errs[i] = resp.GetPodSandboxId(), err
		})
	}
	wg.Wait()
	var made []string
	for i, err := range errs {
		switch status.Code(err) {
		case codes.OK:
			made = append(made, ids[i])
		case codes.AlreadyExists:
		default:
			t.Errorf("RunPodSandbox %d: %v, want OK or AlreadyExists", i, err)
		}
	}
	if len(made) != 1 {
		t.Fatalf("%d calls made a pod (%q), want exactly one", len(made), made)
	}
	list, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{})
	if err != nil || len(list.Items) != 1 || list.Items[0].Id != made[0] {
		t.Errorf("ListPodSandbox = %v, %v; want only %s", list.GetItems(), err, made[0])
	}
	if ns := e.netnsFiles(); len(ns) != 1 {
		t.Errorf("pinned network namespaces %q, want the one pod's", ns)
	}
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: made[0]}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	eventually(t, 10*time.Second, "nothing of the pods is left", func() error { return e.leftovers(made[0]) })
}

// Stop, Remove and Status of one pod, at once and over and over: every Stop
// and Remove succeeds (CRI idempotence), Status answers a consistent state
// or NotFound, never an error, and once removed the pod stays gone.
func TestConcurrentStopRemoveStatus(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("contended")
	sbID := runPod(t, rt, cfg)
	ctrID := startContainer(t, rt, sbID, cfg, busybox("sleeper", "exec sleep 3600"))

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		removed = make(chan struct{})
		once    sync.Once
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	for w := range 6 {
		wg.Go(func() {
			for i := range 15 {
				ctx := podCtx(t)
				switch (w + i) % 3 {
				case 0:
					if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
						fail(fmt.Errorf("StopPodSandbox: %w", err))
					}
				case 1:
					if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
						fail(fmt.Errorf("RemovePodSandbox: %w", err))
					} else {
						once.Do(func() { close(removed) })
					}
				case 2:
					resp, err := rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: sbID})
					select {
					case <-removed:
						if status.Code(err) != codes.NotFound {
							fail(fmt.Errorf("PodSandboxStatus after a RemovePodSandbox returned: %v, %v; want NotFound", resp.GetStatus().GetState(), err))
						}
					default:
						if err != nil && status.Code(err) != codes.NotFound {
							fail(fmt.Errorf("PodSandboxStatus: %w", err))
						}
					}
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
	if _, err := rt.PodSandboxStatus(callCtx(t), &runtime.PodSandboxStatusRequest{PodSandboxId: sbID}); status.Code(err) != codes.NotFound {
		t.Errorf("PodSandboxStatus at the end = %v, want NotFound", err)
	}
	if _, err := rt.ContainerStatus(callCtx(t), &runtime.ContainerStatusRequest{ContainerId: ctrID}); status.Code(err) != codes.NotFound {
		t.Errorf("ContainerStatus of the pod's container at the end = %v, want NotFound", err)
	}
	eventually(t, 10*time.Second, "nothing of the pod is left", func() error { return e.leftovers(sbID, ctrID) })
}

// CreateContainer racing RemovePodSandbox: each create either makes a
// container that the removal then removes, or is refused; no container
// outlives its pod.
func TestCreateContainerRacesRemovePodSandbox(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	for round := range 5 {
		cfg := e.podConfig(fmt.Sprintf("race-%d", round))
		sbID := runPod(t, rt, cfg)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var made []string
		for i := range 8 {
			wg.Go(func() {
				if i == 4 {
					if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
						t.Errorf("RemovePodSandbox: %v", err)
					}
					return
				}
				resp, err := rt.CreateContainer(podCtx(t), &runtime.CreateContainerRequest{
					PodSandboxId: sbID, Config: busybox(fmt.Sprintf("c%d", i), "exec sleep 3600"), SandboxConfig: cfg})
				switch status.Code(err) {
				case codes.OK:
					mu.Lock()
					made = append(made, resp.ContainerId)
					mu.Unlock()
				case codes.NotFound, codes.FailedPrecondition:
				default:
					t.Errorf("CreateContainer racing RemovePodSandbox: %v", err)
				}
			})
		}
		wg.Wait()
		for _, id := range made {
			if _, err := rt.ContainerStatus(callCtx(t), &runtime.ContainerStatusRequest{ContainerId: id}); status.Code(err) != codes.NotFound {
				t.Errorf("round %d: container %s outlived its removed pod: %v", round, id, err)
			}
		}
		eventually(t, 10*time.Second, "nothing of the pod is left", func() error { return e.leftovers(sbID, made...) })
	}
}
