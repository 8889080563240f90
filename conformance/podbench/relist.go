package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// relistStatuses is how many pods (and as many containers) a relist tick
// asks the status of: the kubelet's PLEG inspects the pods whose
// containers changed since the last relist, a few at a time under churn.
const relistStatuses = 5

// relistCallNames are the calls of a relist tick, in the order made.
var relistCallNames = []string{"ListPodSandbox", "ListContainers", "PodSandboxStatus", "ContainerStatus", "ListContainerStats", "ListPodSandboxStats"}

// relistRound is what one runtime's relist under churn measured.
type relistRound struct {
	calls     map[string][]time.Duration
	churned   int // pods started meanwhile
	ticks     int
	lateTicks int // ticks that could not start on their second
}

// relist makes the kubelet's calls once a second, as its PLEG (List of
// pods and containers, then the status of the pods that changed) and its
// stats provider do, for -relist-seconds, while pods churn beside the
// scale section's: a pod is started every -churn-every, with one
// container, and the one before torn down.
func (b *bench) relist(ctx context.Context, t *target, pods *podSet, parent string) (relistRound, error) {
	res := relistRound{calls: map[string][]time.Duration{}}
	podIDs, ctrIDs := pods.snapshot()
	churnCtx, stopChurn := context.WithCancel(ctx)
	churnDone := make(chan error, 1)
	churn := newPodSet(t)
	defer churn.removeAll(ctx)
	go func() { churnDone <- b.churn(churnCtx, t, churn, parent, &res.churned) }()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.Now().Add(time.Duration(b.opts.relistSeconds) * time.Second)
	var err error
	for time.Now().Before(deadline) && err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			continue
		case <-tick.C:
		}
		started := time.Now()
		err = b.relistTick(ctx, t, podIDs, ctrIDs, res.calls)
		res.ticks++
		if time.Since(started) > time.Second {
			res.lateTicks++
		}
	}
	stopChurn()
	if cerr := <-churnDone; err == nil && cerr != nil && ctx.Err() == nil {
		err = fmt.Errorf("churn: %w", cerr)
	}
	return res, err
}

// relistStep is one call of a relist tick.
type relistStep struct {
	name string
	call func(context.Context) error
}

// relistTick makes one second's calls.
func (b *bench) relistTick(ctx context.Context, t *target, pods, ctrs []string, out map[string][]time.Duration) error {
	steps := []relistStep{
		{"ListPodSandbox", func(ctx context.Context) error {
			_, err := t.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
			return err
		}},
		{"ListContainers", func(ctx context.Context) error {
			_, err := t.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
			return err
		}},
	}
	for range relistStatuses {
		pod, ctr := pods[rand.IntN(len(pods))], ctrs[rand.IntN(len(ctrs))]
		steps = append(steps,
			relistStep{"PodSandboxStatus", func(ctx context.Context) error {
				_, err := t.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pod})
				return err
			}},
			relistStep{"ContainerStatus", func(ctx context.Context) error {
				_, err := t.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctr})
				return err
			}})
	}
	steps = append(steps,
		relistStep{"ListContainerStats", func(ctx context.Context) error {
			_, err := t.rt.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{})
			return err
		}},
		relistStep{"ListPodSandboxStats", func(ctx context.Context) error {
			_, err := t.rt.ListPodSandboxStats(ctx, &runtime.ListPodSandboxStatsRequest{})
			return err
		}})
	for _, s := range steps {
		start := time.Now()
		if err := s.call(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		out[s.name] = append(out[s.name], time.Since(start))
	}
	return nil
}

// churn starts a pod, with one container, every b.opts.churnEvery and
// tears down the one before, until ctx ends, counting the pods started in
// n. The churn is the same for every runtime, as on a node where pods come
// and go at a rate of their own (churning as fast as a runtime can would
// load a faster runtime's host more, beside the very calls measured). A
// start that takes longer than the interval is followed at once by the
// next. A pod start that ctx's end cuts short is no error: its pod is in
// pods, which the caller tears down, as is the last one started.
func (b *bench) churn(ctx context.Context, t *target, pods *podSet, parent string, n *int) error {
	every := time.NewTicker(b.opts.churnEvery)
	defer every.Stop()
	prev := ""
	for i := 0; ; i++ {
		pod, err := b.podConfig(fmt.Sprintf("podbench-churn-%d", i), fmt.Sprintf("%s/churn%d", parent, i))
		if err != nil {
			return err
		}
		id, _, err := t.startPod(ctx, pods, pod, b.containerConfig("sleep"))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		*n++
		if prev != "" {
			if _, err := t.teardownPod(context.WithoutCancel(ctx), prev); err != nil {
				return err
			}
			pods.forget(prev)
		}
		prev = id
		select {
		case <-ctx.Done():
			return nil
		case <-every.C:
		}
	}
}

func relistFigures(rounds []scaleRound, call string) callFigures {
	var p50s, p99s []time.Duration
	for _, r := range rounds {
		p50s, p99s = append(p50s, median(r.relist.calls[call])), append(p99s, percentile(r.relist.calls[call], 99))
	}
	return callFigures{p50: median(p50s), p99: median(p99s)}
}

func (b *bench) printRelist(rounds map[*target][]scaleRound) {
	fmt.Printf("\n== relist under churn: the kubelet's calls once a second for %ds (List pods and containers, %d pod and\n"+
		"   container statuses, container and pod stats) with %d pods running, while a pod is started every %s\n"+
		"   and the one before torn down (ratio of the p99)\n", b.opts.relistSeconds, relistStatuses, b.opts.scalePods, b.opts.churnEvery)
	fmt.Printf("%-22s %-20s %10s %10s %8s\n", "runtime", "call", "p50", "p99", "ratio")
	for _, call := range relistCallNames {
		ref := relistFigures(rounds[b.reference()], call)
		for _, t := range b.targets {
			f := relistFigures(rounds[t], call)
			fmt.Printf("%-22s %-20s %10s %10s %8s\n", t.name, call, ms(f.p50), ms(f.p99), ratio(float64(f.p99), float64(ref.p99)))
		}
	}
	fmt.Printf("%-22s %12s %8s %12s\n", "runtime", "pods started", "ticks", "late ticks")
	for _, t := range b.targets {
		for _, r := range rounds[t] {
			fmt.Printf("%-22s %12d %8d %12d\n", t.name, r.relist.churned, r.relist.ticks, r.relist.lateTicks)
		}
	}
}
