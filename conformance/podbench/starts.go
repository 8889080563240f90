package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// roundTimeout bounds one runtime's part of one round of the start
// sections: far more than any healthy runtime needs.
const roundTimeout = 15 * time.Minute

// Goals of the summary: the most each ratio should be.
const (
	goalStart    = 0.80
	goalTeardown = 0.80
	goalParallel = 0.80
)

// startRound is one runtime's pods of one round of section 1.
type startRound struct {
	starts    []startTimes
	teardowns []teardownTimes
}

// startFigures are the figures of one round, or their medians over rounds.
type startFigures struct {
	startP50, startP90, teardownP50 time.Duration
	calls                           [5]time.Duration // p50 of each call, in callNames order
}

var callNames = [5]string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopPodSandbox", "RemovePodSandbox"}

func (r startRound) figures() startFigures {
	var starts, teardowns []time.Duration
	var calls [5][]time.Duration
	for i, s := range r.starts {
		d := r.teardowns[i]
		starts, teardowns = append(starts, s.total()), append(teardowns, d.total())
		for j, v := range []time.Duration{s.run, s.create, s.start, d.stop, d.remove} {
			calls[j] = append(calls[j], v)
		}
	}
	f := startFigures{startP50: median(starts), startP90: percentile(starts, 90), teardownP50: median(teardowns)}
	for j := range calls {
		f.calls[j] = median(calls[j])
	}
	return f
}

// medianFigures is the median over rounds of each figure.
func medianFigures(rounds []startFigures) startFigures {
	pick := func(of func(startFigures) time.Duration) time.Duration {
		var d []time.Duration
		for _, r := range rounds {
			d = append(d, of(r))
		}
		return median(d)
	}
	f := startFigures{
		startP50:    pick(func(r startFigures) time.Duration { return r.startP50 }),
		startP90:    pick(func(r startFigures) time.Duration { return r.startP90 }),
		teardownP50: pick(func(r startFigures) time.Duration { return r.teardownP50 }),
	}
	for j := range f.calls {
		f.calls[j] = pick(func(r startFigures) time.Duration { return r.calls[j] })
	}
	return f
}

// startSection is sections 1 and 2: pods started and torn down one by one,
// and where the runtimes with metrics spend that time.
func (b *bench) startSection(ctx context.Context) error {
	rounds := map[*target][]startFigures{}
	phases := map[*target]*phaseTotals{}
	for r := range b.opts.rounds {
		for _, t := range b.order(r) {
			progress("pod start, round %d/%d: %s, %d pods", r+1, b.opts.rounds, t.name, b.opts.n)
			res, delta, err := b.startRound(ctx, t)
			if err != nil {
				return fmt.Errorf("%s: pod start, round %d: %w", t.name, r+1, err)
			}
			f := res.figures()
			rounds[t] = append(rounds[t], f)
			if delta != nil {
				if phases[t] == nil {
					phases[t] = &phaseTotals{}
				}
				phases[t].add(*delta)
			}
			progress("  %s: start p50 %s, teardown p50 %s", t.name, ms(f.startP50), ms(f.teardownP50))
		}
	}
	medians := map[*target]startFigures{}
	for t, r := range rounds {
		medians[t] = medianFigures(r)
	}
	b.printStarts(medians)
	for _, t := range b.targets {
		if p := phases[t]; p != nil {
			printPhases(t.name, *p, b.opts.n*b.opts.rounds)
		}
	}
	return nil
}

// startRound starts and tears down -n pods one after the other on t,
// after an untimed warm-up pod, and returns the phase totals the runtime's
// metrics grew by meanwhile (nil without metrics).
func (b *bench) startRound(ctx context.Context, t *target) (startRound, *phaseTotals, error) {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	var res startRound
	if err := b.warmUp(ctx, t); err != nil {
		return res, nil, err
	}
	before, err := t.scrapePhases(ctx)
	if err != nil {
		return res, nil, err
	}
	pods := newPodSet(t)
	defer pods.removeAll(ctx)
	for i := range b.opts.n {
		pod, err := b.podConfig(fmt.Sprintf("podbench-%d", i), "")
		if err != nil {
			return res, nil, err
		}
		id, started, err := t.startPod(ctx, pods, pod, b.containerConfig("sleep"))
		if err != nil {
			return res, nil, fmt.Errorf("pod %d: %w", i, err)
		}
		tornDown, err := t.teardownPod(ctx, id)
		if err != nil {
			return res, nil, fmt.Errorf("pod %d: %w", i, err)
		}
		pods.forget(id)
		res.starts, res.teardowns = append(res.starts, started), append(res.teardowns, tornDown)
	}
	after, err := t.scrapePhases(ctx)
	if err != nil || after == nil {
		return res, nil, err
	}
	delta := after.minus(*before)
	return res, &delta, nil
}

func (b *bench) printStarts(f map[*target]startFigures) {
	ref := f[b.reference()]
	fmt.Printf("\n== pod start (RunPodSandbox+CreateContainer+StartContainer) and teardown (StopPodSandbox+RemovePodSandbox):\n"+
		"   %d pods one by one, median of %d rounds (lower is better; ratio = runtime / reference)\n", b.opts.n, b.opts.rounds)
	fmt.Printf("%-22s %12s %10s %8s %14s %8s\n", "runtime", "start p50", "p90", "ratio", "teardown p50", "ratio")
	for _, t := range b.targets {
		r := f[t]
		fmt.Printf("%-22s %12s %10s %8s %14s %8s\n", t.name, ms(r.startP50), ms(r.startP90),
			ratio(float64(r.startP50), float64(ref.startP50)), ms(r.teardownP50), ratio(float64(r.teardownP50), float64(ref.teardownP50)))
		if t != b.reference() {
			b.addGoal(t.name, "pod start p50", float64(r.startP50), float64(ref.startP50), goalStart)
			b.addGoal(t.name, "teardown p50", float64(r.teardownP50), float64(ref.teardownP50), goalTeardown)
		}
	}
	var header strings.Builder
	fmt.Fprintf(&header, "\n%-22s", "p50 of each call")
	for _, c := range callNames {
		fmt.Fprintf(&header, " %16s", c)
	}
	fmt.Println(header.String())
	for _, t := range b.targets {
		fmt.Printf("%-22s", t.name)
		for _, d := range f[t].calls {
			fmt.Printf(" %16s", ms(d))
		}
		fmt.Println()
	}
}

// parallelSection is section 3: -parallel pods started at once.
func (b *bench) parallelSection(ctx context.Context) error {
	walls := map[*target][]time.Duration{}
	for r := range b.opts.rounds {
		for _, t := range b.order(r) {
			progress("parallel start, round %d/%d: %s, %d pods", r+1, b.opts.rounds, t.name, b.opts.parallel)
			wall, err := b.parallelStart(ctx, t)
			if err != nil {
				return fmt.Errorf("%s: parallel start, round %d: %w", t.name, r+1, err)
			}
			walls[t] = append(walls[t], wall)
			progress("  %s: %s", t.name, ms(wall))
		}
	}
	ref := median(walls[b.reference()])
	fmt.Printf("\n== parallel start: %d pods at once (one container each), wall time until all run, median of %d rounds\n",
		b.opts.parallel, b.opts.rounds)
	fmt.Printf("%-22s %12s %10s %10s %8s\n", "runtime", "wall", "min", "max", "ratio")
	for _, t := range b.targets {
		w := median(walls[t])
		fmt.Printf("%-22s %12s %10s %10s %8s\n", t.name, ms(w), ms(percentile(walls[t], 0)), ms(percentile(walls[t], 100)),
			ratio(float64(w), float64(ref)))
		if t != b.reference() {
			b.addGoal(t.name, fmt.Sprintf("parallel %d wall", b.opts.parallel), float64(w), float64(ref), goalParallel)
		}
	}
	return nil
}

// parallelStart starts -parallel pods at once on t, one goroutine each, and
// returns the time from the first call to the last container running. The
// teardown is not timed.
func (b *bench) parallelStart(ctx context.Context, t *target) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	if err := b.warmUp(ctx, t); err != nil {
		return 0, err
	}
	pods := newPodSet(t)
	defer pods.removeAll(ctx)
	// The configs (and log directories) are made first, out of the timing.
	configs := make([]*podAndContainer, b.opts.parallel)
	for i := range configs {
		pod, err := b.podConfig(fmt.Sprintf("podbench-parallel-%d", i), "")
		if err != nil {
			return 0, err
		}
		configs[i] = &podAndContainer{pod: pod, ctr: b.containerConfig("sleep")}
	}
	var g errgroup.Group
	t0 := time.Now()
	for i, c := range configs {
		g.Go(func() error {
			if _, _, err := t.startPod(ctx, pods, c.pod, c.ctr); err != nil {
				return fmt.Errorf("pod %d: %w", i, err)
			}
			return nil
		})
	}
	err := g.Wait()
	return time.Since(t0), err
}
