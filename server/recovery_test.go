package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type fakeRecovery struct {
	done chan struct{}
	err  error
	// waiting, when set, is closed at the second call of Done: a call
	// that found recovery not done asks again to wait for it.
	waiting chan struct{}
	asked   atomic.Int32
}

func (f *fakeRecovery) Done() <-chan struct{} {
	if f.asked.Add(1) == 2 && f.waiting != nil {
		close(f.waiting)
	}
	return f.done
}
func (f *fakeRecovery) Err() error { return f.err }

func TestAwaitRecovery(t *testing.T) {
	defer func(w time.Duration) { recoveryWait = w }(recoveryWait)
	recoveryWait = 100 * time.Millisecond
	ctx := context.Background()

	pending := &fakeRecovery{done: make(chan struct{}), err: errors.New("containerd: connection refused")}
	for _, m := range []string{"Version", "Status"} {
		if err := awaitRecovery(ctx, pending, m); err != nil {
			t.Errorf("%s during recovery: %v, want it answered", m, err)
		}
	}
	err := awaitRecovery(ctx, pending, "ListPodSandbox")
	if status.Code(err) != codes.Unavailable || !contains(err.Error(), "connection refused") {
		t.Errorf("ListPodSandbox during recovery = %v, want Unavailable with the last attempt's error", err)
	}

	// A call made during recovery goes on once it is done, however long
	// before the call's own bound: recovery ends while the call waits.
	recoveryWait = time.Hour
	waiting := &fakeRecovery{done: make(chan struct{}), waiting: make(chan struct{})}
	go func() { <-waiting.waiting; close(waiting.done) }()
	bounded, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := awaitRecovery(bounded, waiting, "ListPodSandbox"); err != nil {
		t.Errorf("ListPodSandbox when recovery finishes meanwhile: %v", err)
	}
	if err := awaitRecovery(ctx, nil, "RunPodSandbox"); err != nil {
		t.Errorf("no recovery at all: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
