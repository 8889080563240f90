// Package monitor follows containerd's event stream for peapod's namespace
// and tells the owners of containers (sandboxes, containers) when a task
// exits, so the in-memory indexes stay current without polling.
package monitor

import (
	"context"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
	"k8s.io/klog/v2"
)

// Exit describes a task's init process that exited.
type Exit struct {
	ContainerID string
	Pid         uint32
	ExitStatus  uint32
	ExitedAt    time.Time
}

// Subscriber is told about task exits; Resync is called after every
// (re)subscription so it can catch exits the stream did not deliver (peapod
// or containerd restarted, or the stream broke).
type Subscriber interface {
	TaskExited(ctx context.Context, e Exit)
	Resync(ctx context.Context)
}

// OOMSubscriber is told when a container's cgroup ran out of memory.
type OOMSubscriber interface {
	OOMKilled(ctx context.Context, containerID string)
}

// Run follows task exits in namespace until ctx is done, resubscribing with
// a backoff when the stream breaks.
func Run(ctx context.Context, c *client.Client, namespace string, subs ...Subscriber) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		follow(ctx, c, namespace, subs)
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func follow(ctx context.Context, c *client.Client, namespace string, subs []Subscriber) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, errs := c.EventService().Subscribe(ctx,
		`topic=="/tasks/exit",namespace==`+namespace,
		`topic=="/tasks/oom",namespace==`+namespace)
	for _, s := range subs {
		s.Resync(ctx)
	}
	for {
		select {
		case env := <-events:
			ev, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				klog.ErrorS(err, "Decoding containerd event", "topic", env.Topic)
				continue
			}
			if oom, ok := ev.(*apievents.TaskOOM); ok {
				for _, s := range subs {
					if o, ok := s.(OOMSubscriber); ok {
						o.OOMKilled(ctx, oom.ContainerID)
					}
				}
				continue
			}
			exit, ok := ev.(*apievents.TaskExit)
			if !ok || exit.ID != exit.ContainerID {
				continue // an exec'd process, not the container's own
			}
			e := Exit{ContainerID: exit.ContainerID, Pid: exit.Pid, ExitStatus: exit.ExitStatus, ExitedAt: exit.ExitedAt.AsTime()}
			for _, s := range subs {
				s.TaskExited(ctx, e)
			}
		case err := <-errs:
			if ctx.Err() == nil {
				klog.ErrorS(err, "containerd event stream broke; resubscribing")
			}
			return
		}
	}
}
