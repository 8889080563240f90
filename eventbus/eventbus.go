// Package eventbus carries container lifecycle events (created, started,
// stopped, deleted; for containers and sandboxes alike) from the packages
// that make them happen to the CRI's GetContainerEvents streams.
package eventbus

import (
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Type is what happened.
type Type int

const (
	Created Type = iota
	Started
	Stopped
	Deleted
)

// Event is one lifecycle change of a container or sandbox.
type Event struct {
	ContainerID string
	// SandboxID is the pod the container belongs to (its own ID for a sandbox).
	SandboxID string
	Type      Type
	At        time.Time
}

// subscriberBuffer is how many events a slow subscriber may lag behind
// before it misses some (the kubelet relists periodically anyway).
const subscriberBuffer = 1024

// Bus fans events out to subscribers. The zero value is ready; a nil *Bus
// drops everything, so packages work without one.
type Bus struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

// Publish sends e to every subscriber without blocking.
func (b *Bus) Publish(e Event) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
			klog.InfoS("Dropping container event for a slow subscriber", "container", e.ContainerID, "type", e.Type)
		}
	}
}

// Subscribe returns a channel of events from now on and a function that
// ends the subscription.
func (b *Bus) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, subscriberBuffer)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[chan Event]struct{}{}
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}
