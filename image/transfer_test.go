package image

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/containerd/containerd/v2/core/transfer"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestMajor(t *testing.T) {
	cases := map[string]int{
		"v2.4.2":     2,
		"2.0.0-rc.1": 2,
		"v10.1.0":    10,
		"1.7.27~ds1": 1,
		"1.6.20":     1,
		"v1.6.20":    1,
		"":           0,
		"dev":        0,
		"v":          0,
	}
	for v, want := range cases {
		if got := major(v); got != want {
			t.Errorf("major(%q) = %d, want %d", v, got, want)
		}
	}
}

func TestTransferCredentials(t *testing.T) {
	cases := []struct {
		name         string
		auth         *Auth
		host         string
		user, secret string
		fails        bool // the pull is ended with an InvalidArgument cause
	}{
		{name: "username and password", auth: &Auth{Username: "u", Password: "p"}, host: "r.example.com", user: "u", secret: "p"},
		{name: "base64 auth", auth: &Auth{Auth: b64("u:p")}, host: "r.example.com", user: "u", secret: "p"},
		{name: "identity token", auth: &Auth{IdentityToken: "refresh"}, host: "r.example.com", secret: "refresh"},
		{name: "server address of another host", auth: &Auth{Username: "u", Password: "p", ServerAddress: "other.example.com"}, host: "r.example.com"},
		{name: "bad base64", auth: &Auth{Auth: "not base64!"}, host: "r.example.com", fails: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cause error
			c := transferCredentials{auth: tc.auth, fail: func(err error) { cause = err }}
			got, err := c.GetCredentials(context.Background(), "r.example.com/app:1", tc.host)
			// An error would leave containerd waiting for an answer.
			if err != nil {
				t.Fatalf("GetCredentials: %v", err)
			}
			if got.Host != tc.host || got.Username != tc.user || got.Secret != tc.secret || got.Header != "" {
				t.Errorf("GetCredentials(%s) = %+v, want user %q, secret %q", tc.host, got, tc.user, tc.secret)
			}
			if tc.fails != (cause != nil) || (cause != nil && !errdefs.IsInvalidArgument(cause)) {
				t.Errorf("pull ended with %v; want an InvalidArgument cause: %v", cause, tc.fails)
			}
		})
	}
}

func TestAuthHasCredentials(t *testing.T) {
	cases := []struct {
		auth *Auth
		want bool
	}{
		{nil, false},
		{&Auth{}, false},
		{&Auth{RegistryToken: "t"}, false},
		{&Auth{ServerAddress: "r.example.com"}, false},
		{&Auth{Username: "u"}, true},
		{&Auth{Password: "p"}, true},
		{&Auth{Auth: b64("u:p")}, true},
		{&Auth{IdentityToken: "t"}, true},
	}
	for _, tc := range cases {
		if got := tc.auth.hasCredentials(); got != tc.want {
			t.Errorf("%+v.hasCredentials() = %v, want %v", tc.auth, got, tc.want)
		}
	}
}

// ev is a progress event of the transfer service.
func ev(event, name string, progress, total int64) transfer.Progress {
	return transfer.Progress{Event: event, Name: name, Progress: progress, Total: total}
}

func TestTransferProgress(t *testing.T) {
	cases := []struct {
		name     string
		events   []transfer.Progress
		inflight int32
		bytes    int64
	}{
		{name: "resolving", inflight: 1},
		{name: "resolving, with its events", events: []transfer.Progress{
			ev("Resolving from OCI Registry (r/app:1)", "", 0, 0),
			ev("fetching image content", "r/app:1", 0, 0),
		}, inflight: 1},
		{name: "a blob started", events: []transfer.Progress{
			ev("waiting", "manifest-sha256:a", 0, 400),
		}, inflight: 1},
		{name: "a blob downloading", events: []transfer.Progress{
			ev("waiting", "layer-sha256:b", 0, 2000),
			ev("downloading", "layer-sha256:b", 700, 2000),
			ev("downloading", "layer-sha256:b", 1500, 2000),
		}, inflight: 1, bytes: 1500},
		{name: "blobs complete", events: []transfer.Progress{
			ev("waiting", "manifest-sha256:a", 0, 400),
			ev("waiting", "config-sha256:c", 0, 300),
			ev("complete", "manifest-sha256:a", 400, 400),
			ev("complete", "config-sha256:c", 300, 300),
			ev("saved", "r/app:1", 0, 0),
		}, inflight: 0, bytes: 700},
		{name: "one of two complete", events: []transfer.Progress{
			ev("waiting", "config-sha256:c", 0, 300),
			ev("waiting", "layer-sha256:b", 0, 2000),
			ev("complete", "config-sha256:c", 300, 300),
		}, inflight: 1, bytes: 300},
		{name: "a layer extracting is downloaded", events: []transfer.Progress{
			ev("waiting", "layer-sha256:b", 0, 2000),
			ev("downloading", "layer-sha256:b", 500, 2000),
			ev("extracting", "layer-sha256:b", 100, 2000),
		}, inflight: 0, bytes: 2000},
		{name: "a layer extracted", events: []transfer.Progress{
			ev("waiting", "layer-sha256:b", 0, 2000),
			ev("extracted", "layer-sha256:b", 2000, 2000),
		}, inflight: 0, bytes: 2000},
		{name: "already there", events: []transfer.Progress{
			ev("waiting", "layer-sha256:b", 0, 2000),
			ev("already exists", "layer-sha256:b", 2000, 2000),
		}, inflight: 0, bytes: 2000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newProgressWatch(0, func(error) {})
			defer w.stop()
			tw := newTransferWatch(w, "r/app:1")
			for _, e := range tc.events {
				tw.progress(e)
			}
			if got := w.inflight.Load(); got != tc.inflight {
				t.Errorf("in flight = %d, want %d", got, tc.inflight)
			}
			if got := w.bytes.Load(); got != tc.bytes {
				t.Errorf("bytes = %d, want %d", got, tc.bytes)
			}
		})
	}
}

// Only what advances is progress: containerd repeats a layer's extraction
// every 300 ms whether or not it moved.
func TestTransferProgressTouches(t *testing.T) {
	steps := []struct {
		event transfer.Progress
		touch bool
	}{
		{ev("Resolving from OCI Registry (r/app:1)", "", 0, 0), false},
		{ev("waiting", "layer-sha256:b", 0, 2000), true},
		{ev("downloading", "layer-sha256:b", 500, 2000), true},
		{ev("downloading", "layer-sha256:b", 500, 2000), false},
		{ev("extracting", "layer-sha256:b", 100, 2000), true},
		{ev("extracting", "layer-sha256:b", 100, 2000), false},
		{ev("extracting", "layer-sha256:b", 900, 2000), true},
		{ev("extracted", "layer-sha256:b", 2000, 2000), true},
		{ev("complete", "config-sha256:c", 300, 300), true},
		{ev("saved", "r/app:1", 0, 0), false},
	}
	w := newProgressWatch(0, func(error) {})
	defer w.stop()
	progress := newTransferWatch(w, "r/app:1").progress
	for i, s := range steps {
		w.last.Store(0)
		progress(s.event)
		if touched := w.last.Load() != 0; touched != s.touch {
			t.Errorf("step %d (%s %s %d): touched %v, want %v", i, s.event.Event, s.event.Name, s.event.Progress, touched, s.touch)
		}
	}
}

// The record containerd reports saving stands for the one it saved.
func TestTransferWatchSaved(t *testing.T) {
	w := newProgressWatch(0, func(error) {})
	defer w.stop()
	tw := newTransferWatch(w, "r/app:1")
	if _, ok := tw.savedTarget(); ok {
		t.Fatal("a saved target before any report")
	}
	target := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("index"), Size: 5}
	other := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("other"), Size: 5}
	tw.progress(transfer.Progress{Event: "fetching image content", Name: "r/app:1", Desc: &other})
	tw.progress(transfer.Progress{Event: "saved", Name: "r/app@" + other.Digest.String(), Desc: &other})
	if _, ok := tw.savedTarget(); ok {
		t.Fatal("a saved target from another event or record")
	}
	tw.progress(transfer.Progress{Event: "saved", Name: "r/app:1", Desc: &target})
	if got, ok := tw.savedTarget(); !ok || got.Digest != target.Digest {
		t.Errorf("saved target = %v, %v; want %v", got, ok, target)
	}
}

// The watch ends a transfer whose blob stops growing, and not one whose
// blob grows slowly. It runs on the virtual clock of a synctest bubble: a
// cancellation that never comes fails the bubble as a deadlock, and the
// slow blob's pauses are exact however loaded the machine is.
func TestTransferProgressWatch(t *testing.T) {
	watch := func(t *testing.T) (context.Context, transfer.ProgressFunc) {
		ctx, cancel := context.WithCancelCause(context.Background())
		t.Cleanup(func() { cancel(nil) })
		w := newProgressWatch(watchTimeout, cancel)
		t.Cleanup(w.stop)
		return ctx, newTransferWatch(w, "r/app:1").progress
	}
	bubble := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, f)
		})
	}

	bubble("stalled blob is cancelled", func(t *testing.T) {
		ctx, progress := watch(t)
		progress(ev("waiting", "layer-sha256:b", 0, 2000))
		progress(ev("downloading", "layer-sha256:b", 10, 2000))
		start := time.Now()
		<-ctx.Done()
		if took, want := time.Since(start), watchTimeout+watchTimeout/4; took != want {
			t.Errorf("cancelled after %s of no progress, want %s", took, want)
		}
		if cause := context.Cause(ctx); !errors.Is(cause, errNoProgress) {
			t.Errorf("cause = %v, want errNoProgress", cause)
		}
	})

	bubble("stalled resolve is cancelled", func(t *testing.T) {
		ctx, _ := watch(t)
		<-ctx.Done()
		if cause := context.Cause(ctx); !errors.Is(cause, errNoProgress) {
			t.Errorf("cause = %v, want errNoProgress", cause)
		}
	})

	bubble("slow blob is not cancelled", func(t *testing.T) {
		ctx, progress := watch(t)
		progress(ev("waiting", "layer-sha256:b", 0, 2000))
		for i := range int64(12) {
			time.Sleep(watchTimeout / 3)
			if ctx.Err() != nil {
				t.Fatalf("cancelled while the blob grows: %v", context.Cause(ctx))
			}
			progress(ev("downloading", "layer-sha256:b", 100*(i+1), 2000))
		}
	})

	bubble("extraction is not a stall", func(t *testing.T) {
		ctx, progress := watch(t)
		progress(ev("waiting", "layer-sha256:b", 0, 2000))
		progress(ev("extracting", "layer-sha256:b", 10, 2000))
		time.Sleep(quietWait)
		if ctx.Err() != nil {
			t.Fatalf("cancelled while nothing downloads: %v", context.Cause(ctx))
		}
	})
}
