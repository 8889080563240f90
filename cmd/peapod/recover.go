package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Backoff between recovery attempts, and the bound of one attempt's step.
const (
	recoveryRetryFirst = 500 * time.Millisecond
	recoveryRetryMax   = 10 * time.Second
	recoveryStepLimit  = 2 * time.Minute
)

// recoveryStep is one kind's start-up recovery (see the Recover methods).
type recoveryStep struct {
	name string
	run  func(context.Context) error
}

// recovery runs the start-up recovery steps, in order, until every one
// has succeeded: containerd may be down when peapod starts, or a step may
// fail on a passing error. It is the server.Recovery the CRI waits for.
type recovery struct {
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func newRecovery() *recovery { return &recovery{done: make(chan struct{})} }

func (r *recovery) Done() <-chan struct{} { return r.done }

func (r *recovery) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// run runs the steps, retrying from the first that failed, until all have
// succeeded (then Done is closed and it returns true) or ctx ends.
func (r *recovery) run(ctx context.Context, steps []recoveryStep) bool {
	start := time.Now()
	delay := recoveryRetryFirst
	for i := 0; i < len(steps); {
		sctx, cancel := context.WithTimeout(ctx, recoveryStepLimit)
		stepStart := time.Now()
		err := steps[i].run(sctx)
		cancel()
		if err == nil {
			klog.V(2).InfoS("Recovered", "step", steps[i].name, "duration", time.Since(stepStart))
			i++
			continue
		}
		err = fmt.Errorf("recovering %s: %w", steps[i].name, err)
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		klog.ErrorS(err, "Start-up recovery failed; retrying", "in", delay)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, recoveryRetryMax)
	}
	klog.InfoS("Recovered state from containerd", "duration", time.Since(start))
	close(r.done)
	return true
}
