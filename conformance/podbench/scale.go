package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// scaleTimeout bounds one runtime's scale section, pods included.
	scaleTimeout = 60 * time.Minute
	// scaleWorkers is how many pods are made at once: making them is not
	// measured, and one by one would take minutes.
	scaleWorkers = 4
	// memorySettle lets the processes of the last pods finish starting (and
	// their first allocations land) before memory is read.
	memorySettle = 3 * time.Second
)

// Goals of the summary.
const (
	goalListStatusP99 = 1.00
	goalStatsP50      = 0.20
	goalMemory        = 1.00
)

// scaleCallNames are the calls timed at scale, in the order made; the last
// two are the stats calls, compared by p50, the others by p99.
var scaleCallNames = []string{"ListPodSandbox", "ListContainers", "ContainerStatus", "PodSandboxStatus", "ListContainerStats", "ListPodSandboxStats"}

func isStatsCall(name string) bool {
	return name == "ListContainerStats" || name == "ListPodSandboxStats"
}

// scaleRound is one runtime's scale section.
type scaleRound struct {
	calls  map[string][]time.Duration
	memory []memoryPoint // at each of memoryPoints()
	relist relistRound
}

// memoryPoints are the pod counts at which memory is measured.
func (b *bench) memoryPoints() []int {
	if b.opts.memoryPods > 0 && b.opts.memoryPods < b.opts.scalePods {
		return []int{b.opts.memoryPods, b.opts.scalePods}
	}
	return []int{b.opts.scalePods}
}

// scaleSection is sections 4 and 5: many pods running, the List, Status and
// stats calls the kubelet makes, and the memory it all costs.
func (b *bench) scaleSection(ctx context.Context) error {
	rounds := map[*target][]scaleRound{}
	for r := range b.opts.scaleRounds {
		for _, t := range b.order(r) {
			progress("scale, round %d/%d: %s, %d pods of %d containers", r+1, b.opts.scaleRounds, t.name, b.opts.scalePods, b.opts.scalePerPod)
			res, err := b.scale(ctx, t)
			if err != nil {
				return fmt.Errorf("%s: scale, round %d: %w", t.name, r+1, err)
			}
			rounds[t] = append(rounds[t], res)
		}
	}
	b.printScale(rounds)
	if b.opts.relistSeconds > 0 {
		b.printRelist(rounds)
	}
	b.printMemory(rounds)
	return nil
}

// scale makes the pods of the scale section on t, measuring memory on the
// way, times the calls, and removes the pods and their cgroups.
func (b *bench) scale(ctx context.Context, t *target) (scaleRound, error) {
	ctx, cancel := context.WithTimeout(ctx, scaleTimeout)
	defer cancel()
	var res scaleRound
	// Each pod has a cgroup parent of its own, as the kubelet gives
	// (containerd's CRI cannot measure a pod without one); the runtimes
	// create them, the kubelet's part is to remove them.
	parent := fmt.Sprintf("/podbench-%d", time.Now().UnixNano())
	pods := newPodSet(t)
	defer func() {
		progress("  %s: removing the scale pods", t.name)
		pods.removeAll(ctx)
		removeCgroups(parent)
	}()
	containerdBefore, err := b.containerdPSS()
	if err != nil {
		return res, err
	}
	made := 0
	for _, point := range b.memoryPoints() {
		if err := b.makeScalePods(ctx, t, pods, parent, made, point); err != nil {
			return res, err
		}
		made = point
		if !b.measuresMemory(t) {
			continue
		}
		if err := sleep(ctx, memorySettle); err != nil {
			return res, err
		}
		m, err := b.measureMemory(t, point, point*b.opts.scalePerPod, containerdBefore)
		if err != nil {
			return res, err
		}
		progress("  %s: %d pods running, footprint %s", t.name, point, mib(m.footprint()))
		res.memory = append(res.memory, m)
	}
	progress("  %s: timing %d calls of each", t.name, b.opts.scaleCalls)
	if res.calls, err = b.timeScaleCalls(ctx, t, pods); err != nil || b.opts.relistSeconds == 0 {
		return res, err
	}
	progress("  %s: relist under churn for %ds", t.name, b.opts.relistSeconds)
	res.relist, err = b.relist(ctx, t, pods, parent)
	return res, err
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// makeScalePods makes the pods numbered from..to-1, each with its
// containers running, a few at a time.
func (b *bench) makeScalePods(ctx context.Context, t *target, pods *podSet, parent string, from, to int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(scaleWorkers)
	for i := from; i < to; i++ {
		g.Go(func() error {
			if err := b.makeScalePod(ctx, t, pods, parent, i); err != nil {
				return fmt.Errorf("scale pod %d: %w", i, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func (b *bench) makeScalePod(ctx context.Context, t *target, pods *podSet, parent string, i int) error {
	pod, err := b.podConfig(fmt.Sprintf("podbench-scale-%d", i), fmt.Sprintf("%s/pod%d", parent, i))
	if err != nil {
		return err
	}
	p, err := t.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		return fmt.Errorf("RunPodSandbox: %w", err)
	}
	pods.add(p.PodSandboxId)
	for j := range b.opts.scalePerPod {
		id, _, _, err := t.startContainer(ctx, p.PodSandboxId, pod, b.containerConfig(fmt.Sprintf("sleep-%d", j)))
		if err != nil {
			return err
		}
		pods.addContainer(id)
	}
	return nil
}

// scaleCall is one timed call; ids lists what its answer covers, for the
// check (nil for the Status calls), out of the timing.
type scaleCall struct {
	name string
	want []string
	call func(context.Context) (ids func() []string, err error)
}

// scaleCalls are the calls the kubelet makes over and over, as it makes
// them (no filter, no verbose status), on random pods and containers.
func scaleCalls(t *target, pods, ctrs []string) []scaleCall {
	return []scaleCall{
		{"ListPodSandbox", pods, func(ctx context.Context) (func() []string, error) {
			r, err := t.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
			return func() []string { return idsOf(r.GetItems(), (*runtime.PodSandbox).GetId) }, err
		}},
		{"ListContainers", ctrs, func(ctx context.Context) (func() []string, error) {
			r, err := t.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
			return func() []string { return idsOf(r.GetContainers(), (*runtime.Container).GetId) }, err
		}},
		{"ContainerStatus", nil, func(ctx context.Context) (func() []string, error) {
			_, err := t.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctrs[rand.IntN(len(ctrs))]})
			return nil, err
		}},
		{"PodSandboxStatus", nil, func(ctx context.Context) (func() []string, error) {
			_, err := t.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pods[rand.IntN(len(pods))]})
			return nil, err
		}},
		{"ListContainerStats", ctrs, func(ctx context.Context) (func() []string, error) {
			r, err := t.rt.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{})
			return func() []string {
				return idsOf(r.GetStats(), func(s *runtime.ContainerStats) string { return s.GetAttributes().GetId() })
			}, err
		}},
		{"ListPodSandboxStats", pods, func(ctx context.Context) (func() []string, error) {
			r, err := t.rt.ListPodSandboxStats(ctx, &runtime.ListPodSandboxStatsRequest{})
			return func() []string {
				return idsOf(r.GetStats(), func(s *runtime.PodSandboxStats) string { return s.GetAttributes().GetId() })
			}, err
		}},
	}
}

func idsOf[T any](items []T, id func(T) string) []string {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = id(it)
	}
	return ids
}

// missing counts the IDs of want that got lacks.
func missing(want, got []string) int {
	have := make(map[string]bool, len(got))
	for _, id := range got {
		have[id] = true
	}
	n := 0
	for _, id := range want {
		if !have[id] {
			n++
		}
	}
	return n
}

// timeScaleCalls times -scale-calls rounds of every call, after one
// untimed warm-up round, checking each List answer covers every pod or
// container made.
func (b *bench) timeScaleCalls(ctx context.Context, t *target, pods *podSet) (map[string][]time.Duration, error) {
	podIDs, ctrIDs := pods.snapshot()
	calls := scaleCalls(t, podIDs, ctrIDs)
	out := map[string][]time.Duration{}
	for i := -1; i < b.opts.scaleCalls; i++ {
		for _, c := range calls {
			start := time.Now()
			ids, err := c.call(ctx)
			took := time.Since(start)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			if c.want != nil {
				if n := missing(c.want, ids()); n > 0 {
					return nil, fmt.Errorf("%s misses %d of the %d made", c.name, n, len(c.want))
				}
			}
			if i >= 0 {
				out[c.name] = append(out[c.name], took)
			}
		}
	}
	return out, nil
}

// callFigures is a call's p50 and p99, of one round or median over rounds.
type callFigures struct{ p50, p99 time.Duration }

func scaleFigures(rounds []scaleRound, call string) callFigures {
	var p50s, p99s []time.Duration
	for _, r := range rounds {
		p50s, p99s = append(p50s, median(r.calls[call])), append(p99s, percentile(r.calls[call], 99))
	}
	return callFigures{p50: median(p50s), p99: median(p99s)}
}

func (b *bench) printScale(rounds map[*target][]scaleRound) {
	fmt.Printf("\n== scale: %d pods of %d containers running; %d calls of each, median of %d rounds\n"+
		"   (ratio of the p99 for List/Status calls, of the p50 for stats calls)\n",
		b.opts.scalePods, b.opts.scalePerPod, b.opts.scaleCalls, b.opts.scaleRounds)
	fmt.Printf("%-22s %-20s %10s %10s %8s\n", "runtime", "call", "p50", "p99", "ratio")
	for _, call := range scaleCallNames {
		ref := scaleFigures(rounds[b.reference()], call)
		for _, t := range b.targets {
			f := scaleFigures(rounds[t], call)
			v, r, what, max := f.p99, ref.p99, call+" p99", goalListStatusP99
			if isStatsCall(call) {
				v, r, what, max = f.p50, ref.p50, call+" p50", goalStatsP50
			}
			fmt.Printf("%-22s %-20s %10s %10s %8s\n", t.name, call, ms(f.p50), ms(f.p99), ratio(float64(v), float64(r)))
			if t != b.reference() {
				b.addGoal(t.name, fmt.Sprintf("scale %s", what), float64(v), float64(r), max)
			}
		}
	}
}

// medianMemory is, at each memory point, the round whose footprint is the
// median, so that the components printed add up.
func medianMemory(rounds []scaleRound, point int) (memoryPoint, bool) {
	var at []memoryPoint
	for _, r := range rounds {
		if point < len(r.memory) {
			at = append(at, r.memory[point])
		}
	}
	if len(at) == 0 {
		return memoryPoint{}, false
	}
	slices.SortFunc(at, func(a, b memoryPoint) int {
		switch fa, fb := a.footprint(), b.footprint(); {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	})
	return at[len(at)/2], true
}

func (b *bench) printMemory(rounds map[*target][]scaleRound) {
	fmt.Printf("\n== memory (PSS, from /proc/PID/smaps_rollup): footprint = own processes + IO processes + containerd growth\n" +
		"   since before the runtime's pods (the reference's own process is containerd: its growth alone); shims and\n" +
		"   pause processes are the same for both runtimes and not counted\n")
	fmt.Printf("%-22s %6s %10s %11s %6s %13s %11s %10s %8s\n", "runtime", "pods", "own", "IO", "procs", "containerd Δ", "footprint", "per ctr", "ratio")
	for i, point := range b.memoryPoints() {
		ref, refOK := medianMemory(rounds[b.reference()], i)
		for _, t := range b.targets {
			m, ok := medianMemory(rounds[t], i)
			if !ok {
				fmt.Printf("%-22s %6d %10s\n", t.name, point, "(not measured: no -pid, -io-binary or -containerd-pid)")
				continue
			}
			r := "-"
			if refOK {
				r = ratio(m.footprint(), ref.footprint())
			}
			fmt.Printf("%-22s %6d %10s %11s %6s %13s %11s %10s %8s\n", t.name, point,
				orDash(m.hasOwn, mib(m.own)), orDash(m.hasIO, mib(m.io)), orDash(m.hasIO, fmt.Sprint(m.ioProcs)),
				orDash(m.hasContainerd, mib(m.containerdDelta)), mib(m.footprint()),
				fmt.Sprintf("%.2fMiB", m.perContainer()), r)
			if i == 0 && refOK && t != b.reference() {
				b.addGoal(t.name, fmt.Sprintf("memory at %d pods", point), m.footprint(), ref.footprint(), goalMemory)
			}
		}
	}
}

func orDash(ok bool, s string) string {
	if !ok {
		return "-"
	}
	return s
}

// removeCgroups removes the (by now empty) cgroup directories under parent
// in every hierarchy, deepest first.
func removeCgroups(parent string) {
	var dirs []string
	for _, pattern := range []string{"*/%s/*", "%s/*", "*/%s", "%s"} {
		matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", fmt.Sprintf(pattern, parent)))
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				dirs = append(dirs, m)
			}
		}
	}
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			fmt.Fprintf(os.Stderr, "podbench: removing cgroup %s: %v\n", d, err)
		}
	}
}
