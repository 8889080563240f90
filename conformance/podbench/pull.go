package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// goalPull is the most the PullImage ratio should be.
const goalPull = 1.00

// pullSection is section 6: PullImage of an image just removed. Both
// runtimes share containerd's content store, so the blobs stay there and
// each pull resolves, fetches the manifests and unpacks: the same work
// for both.
func (b *bench) pullSection(ctx context.Context) error {
	p50s := map[*target][]time.Duration{}
	for r := range b.opts.rounds {
		for _, t := range b.order(r) {
			progress("PullImage, round %d/%d: %s, %d pulls of %s", r+1, b.opts.rounds, t.name, b.opts.pulls, b.opts.pullImage)
			took, err := b.pulls(ctx, t)
			if err != nil {
				return fmt.Errorf("%s: PullImage, round %d: %w", t.name, r+1, err)
			}
			p50s[t] = append(p50s[t], median(took))
			progress("  %s: p50 %s", t.name, ms(median(took)))
		}
	}
	ref := median(p50s[b.reference()])
	fmt.Printf("\n== PullImage %s (removed before each pull): %d pulls, median of %d rounds\n", b.opts.pullImage, b.opts.pulls, b.opts.rounds)
	fmt.Printf("%-22s %12s %8s\n", "runtime", "p50", "ratio")
	for _, t := range b.targets {
		p50 := median(p50s[t])
		fmt.Printf("%-22s %12s %8s\n", t.name, ms(p50), ratio(float64(p50), float64(ref)))
		if t != b.reference() {
			b.addGoal(t.name, "PullImage p50", float64(p50), float64(ref), goalPull)
		}
	}
	return nil
}

// pulls removes and pulls the image -pulls times on t, timing the pulls.
func (b *bench) pulls(ctx context.Context, t *target) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	spec := &runtime.ImageSpec{Image: b.opts.pullImage}
	var took []time.Duration
	for range b.opts.pulls {
		_, err := t.is.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec})
		if err != nil && status.Code(err) != codes.NotFound {
			return nil, fmt.Errorf("RemoveImage %s: %w", b.opts.pullImage, err)
		}
		start := time.Now()
		_, err = t.is.PullImage(ctx, &runtime.PullImageRequest{Image: spec})
		took = append(took, time.Since(start))
		if err != nil {
			return nil, fmt.Errorf("PullImage %s: %w", b.opts.pullImage, err)
		}
	}
	return took, nil
}
