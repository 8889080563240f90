package eventbus

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestPublishSubscribe(t *testing.T) {
	// On synctest's virtual clock: the bound below is reached only when
	// delivery is blocked for good, never because the machine is slow.
	synctest.Test(t, func(t *testing.T) {
		var b Bus
		a, stopA := b.Subscribe()
		c, stopC := b.Subscribe()
		defer stopC()
		e := Event{ContainerID: "x", SandboxID: "p", Type: Started, At: time.Now()}
		b.Publish(e)
		for _, ch := range []<-chan Event{a, c} {
			select {
			case got := <-ch:
				if got != e {
					t.Fatalf("got %+v, want %+v", got, e)
				}
			case <-time.After(time.Second):
				t.Fatal("event not delivered")
			}
		}
		stopA()
		b.Publish(Event{ContainerID: "y"})
		select {
		case got := <-a:
			t.Fatalf("unsubscribed channel got %+v", got)
		default:
		}
		if got := <-c; got.ContainerID != "y" {
			t.Fatalf("got %+v", got)
		}
	})
}

func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	// On synctest's virtual clock: the bound below is reached only when
	// delivery is blocked for good, never because the machine is slow.
	synctest.Test(t, func(t *testing.T) {
		var b Bus
		_, stop := b.Subscribe()
		defer stop()
		done := make(chan struct{})
		go func() {
			for range subscriberBuffer + 10 {
				b.Publish(Event{ContainerID: "x"})
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("Publish blocked on a full subscriber")
		}
	})
}

func TestNilBus(t *testing.T) {
	var b *Bus
	b.Publish(Event{ContainerID: "x"}) // must not panic
}
