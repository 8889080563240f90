package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Steps are retried from the first that failed until all succeed; each
// succeeded step is not run again.
func TestRecoveryRetries(t *testing.T) {
	runs := map[string]int{}
	failures := 2
	steps := []recoveryStep{
		{"first", func(context.Context) error { runs["first"]++; return nil }},
		{"flaky", func(context.Context) error {
			runs["flaky"]++
			if failures > 0 {
				failures--
				return errors.New("containerd is down")
			}
			return nil
		}},
		{"last", func(context.Context) error { runs["last"]++; return nil }},
	}
	r := newRecovery()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !r.run(ctx, steps) {
		t.Fatal("recovery did not finish")
	}
	select {
	case <-r.Done():
	default:
		t.Fatal("Done not closed after recovery")
	}
	if runs["first"] != 1 || runs["flaky"] != 3 || runs["last"] != 1 {
		t.Errorf("runs %v, want first 1, flaky 3, last 1", runs)
	}
	if r.Err() == nil {
		t.Error("Err does not keep the last failure")
	}

	// Cancelled while a step keeps failing: it gives up, Done stays open.
	r2 := newRecovery()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if r2.run(ctx2, []recoveryStep{{"down", func(context.Context) error { return errors.New("down") }}}) {
		t.Fatal("recovery finished although its step always fails")
	}
	select {
	case <-r2.Done():
		t.Fatal("Done closed although recovery did not finish")
	default:
	}
}
