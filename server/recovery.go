package server

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Recovery is peapod's start-up recovery: rebuilding its indexes from
// containerd and settling what a crash left half-done. Until it is done,
// no CRI call but Version and Status touches state: each waits for it
// (briefly), then answers Unavailable, so that the kubelet retries.
type Recovery interface {
	// Done is closed once recovery has finished.
	Done() <-chan struct{}
	// Err is why the last attempt failed, while recovery is not done.
	Err() error
}

// recoveryWait bounds how long a call waits for recovery to finish.
var recoveryWait = 10 * time.Second

// ungated are the calls answered during recovery: they report on peapod
// and containerd, and touch no state.
var ungated = map[string]bool{"Version": true, "Status": true}

// awaitRecovery returns nil once recovery is done, or an Unavailable error
// when it is not done within recoveryWait.
func awaitRecovery(ctx context.Context, rec Recovery, method string) error {
	if rec == nil || ungated[method] {
		return nil
	}
	select {
	case <-rec.Done():
		return nil
	default:
	}
	t := time.NewTimer(recoveryWait)
	defer t.Stop()
	select {
	case <-rec.Done():
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-t.C:
		return status.Errorf(codes.Unavailable, "%s: peapod is still recovering its state from containerd (last attempt: %v)", method, rec.Err())
	}
}
