package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// teardownTimeout bounds the removal of what a section made: generous, as
// hundreds of pods may be left after an error.
const teardownTimeout = 15 * time.Minute

// podSeq makes every pod's Uid unique within the run; the timestamp in it
// makes it unique across runs.
var podSeq atomic.Int64

// podConfig is a pod as the kubelet would ask for it, with a log directory
// of its own (which the kubelet, not the runtime, creates). cgroupParent
// may be empty.
func (b *bench) podConfig(name, cgroupParent string) (*runtime.PodSandboxConfig, error) {
	uid := fmt.Sprintf("%s-%d-%d", name, time.Now().UnixNano(), podSeq.Add(1))
	logDir := filepath.Join(b.logRoot, uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the log directory of pod %s: %w", name, err)
	}
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "podbench", Uid: uid},
		LogDirectory: logDir,
		Linux:        &runtime.LinuxPodSandboxConfig{CgroupParent: cgroupParent},
	}, nil
}

// containerConfig is a container that sleeps, logging to NAME.log in its
// pod's log directory, so that both runtimes run their log machinery.
func (b *bench) containerConfig(name string) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: name},
		Image:    &runtime.ImageSpec{Image: b.opts.image},
		Command:  []string{"sleep", "3600"},
		LogPath:  name + ".log",
		Linux:    &runtime.LinuxContainerConfig{},
	}
}

// startTimes is how long each call of one pod's start took.
type startTimes struct{ run, create, start time.Duration }

func (s startTimes) total() time.Duration { return s.run + s.create + s.start }

// startPod runs a pod and starts one container in it, timing each call.
// The pod is added to pods as soon as it exists, so that it is torn down
// whatever happens next.
func (t *target) startPod(ctx context.Context, pods *podSet, pod *runtime.PodSandboxConfig, ctr *runtime.ContainerConfig) (string, startTimes, error) {
	var took startTimes
	t0 := time.Now()
	p, err := t.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	took.run = time.Since(t0)
	if err != nil {
		return "", took, fmt.Errorf("RunPodSandbox: %w", err)
	}
	pods.add(p.PodSandboxId)
	cid, create, start, err := t.startContainer(ctx, p.PodSandboxId, pod, ctr)
	took.create, took.start = create, start
	if err == nil {
		pods.addContainer(cid)
	}
	return p.PodSandboxId, took, err
}

// startContainer creates and starts one container in a pod, timing each call.
func (t *target) startContainer(ctx context.Context, podID string, pod *runtime.PodSandboxConfig, ctr *runtime.ContainerConfig) (id string, create, start time.Duration, err error) {
	t0 := time.Now()
	c, err := t.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: ctr, SandboxConfig: pod})
	create = time.Since(t0)
	if err != nil {
		return "", create, 0, fmt.Errorf("CreateContainer %s: %w", ctr.Metadata.Name, err)
	}
	t1 := time.Now()
	_, err = t.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ContainerId})
	start = time.Since(t1)
	if err != nil {
		return c.ContainerId, create, start, fmt.Errorf("StartContainer %s: %w", ctr.Metadata.Name, err)
	}
	return c.ContainerId, create, start, nil
}

// teardownTimes is how long each call of one pod's teardown took.
type teardownTimes struct{ stop, remove time.Duration }

func (d teardownTimes) total() time.Duration { return d.stop + d.remove }

// teardownPod stops the pod (and so its containers) and removes it, as the
// kubelet does. It still tries the removal when the stop fails.
func (t *target) teardownPod(ctx context.Context, id string) (teardownTimes, error) {
	var took teardownTimes
	t0 := time.Now()
	_, stopErr := t.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id})
	took.stop = time.Since(t0)
	if stopErr != nil {
		stopErr = fmt.Errorf("StopPodSandbox %s: %w", id, stopErr)
	}
	t1 := time.Now()
	_, removeErr := t.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id})
	took.remove = time.Since(t1)
	if removeErr != nil {
		removeErr = fmt.Errorf("RemovePodSandbox %s: %w", id, removeErr)
	}
	return took, errors.Join(stopErr, removeErr)
}

// warmUp starts and removes one pod, untimed: the first pod after a pause
// (or ever) pays for cold caches and, the very first, the pause image pull.
func (b *bench) warmUp(ctx context.Context, t *target) error {
	pods := newPodSet(t)
	defer pods.removeAll(ctx)
	pod, err := b.podConfig("podbench-warmup", "")
	if err != nil {
		return err
	}
	if _, _, err := t.startPod(ctx, pods, pod, b.containerConfig("sleep")); err != nil {
		return fmt.Errorf("warm-up pod: %w", err)
	}
	return nil
}

// podSet is what a section made on a runtime, safe for concurrent use, so
// that it can all be torn down at the end whatever happened.
type podSet struct {
	t          *target
	mu         sync.Mutex
	pods       []string
	containers []string
}

func newPodSet(t *target) *podSet { return &podSet{t: t} }

func (s *podSet) add(pod string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods = append(s.pods, pod)
}

func (s *podSet) addContainer(ctr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.containers = append(s.containers, ctr)
}

// forget drops a pod already torn down.
func (s *podSet) forget(pod string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pods {
		if p == pod {
			s.pods = append(s.pods[:i], s.pods[i+1:]...)
			return
		}
	}
}

// snapshot returns copies of the pod and container IDs.
func (s *podSet) snapshot() (pods, containers []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.pods...), append([]string(nil), s.containers...)
}

// teardownWorkers is how many pods are torn down at once: enough to be
// quick, few enough not to time out on a 2-core machine.
const teardownWorkers = 4

// removeAll tears down every pod of the set, untimed, on a context of its
// own, so that it runs even when ctx was cancelled. Failures are reported
// on stderr: the caller's own error matters more.
func (s *podSet) removeAll(ctx context.Context) {
	pods, _ := s.snapshot()
	if len(pods) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
	defer cancel()
	var g errgroup.Group
	g.SetLimit(teardownWorkers)
	for _, id := range pods {
		g.Go(func() error {
			if _, err := s.t.teardownPod(ctx, id); err != nil {
				fmt.Fprintf(os.Stderr, "podbench: %s: teardown: %v\n", s.t.name, err)
			}
			return nil
		})
	}
	_ = g.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods, s.containers = nil, nil
}

// podAndContainer is the config of a pod and of its one container.
type podAndContainer struct {
	pod *runtime.PodSandboxConfig
	ctr *runtime.ContainerConfig
}
