package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type fakeRecovery struct {
	done chan struct{}
	err  error
}

func (f *fakeRecovery) Done() <-chan struct{} { return f.done }
func (f *fakeRecovery) Err() error            { return f.err }

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

	// A call made during recovery goes on once it is done.
	go func() { time.Sleep(30 * time.Millisecond); close(pending.done) }()
	if err := awaitRecovery(ctx, pending, "ListPodSandbox"); err != nil {
		t.Errorf("ListPodSandbox when recovery finishes meanwhile: %v", err)
	}
	if err := awaitRecovery(ctx, nil, "RunPodSandbox"); err != nil {
		t.Errorf("no recovery at all: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
