package image

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/containerd/errdefs"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestAuthCredentials(t *testing.T) {
	cases := []struct {
		name       string
		auth       *Auth
		host       string
		user, pass string
		invalid    bool // the error must wrap errdefs.ErrInvalidArgument
	}{
		{name: "nil", auth: nil, host: "registry.example.com"},
		{name: "empty", auth: &Auth{}, host: "registry.example.com"},
		{name: "username and password", auth: &Auth{Username: "u", Password: "p"}, host: "r.example.com", user: "u", pass: "p"},
		{name: "username only", auth: &Auth{Username: "u"}, host: "r.example.com", user: "u"},
		{name: "base64 auth", auth: &Auth{Auth: b64("u:p")}, host: "r.example.com", user: "u", pass: "p"},
		{name: "base64 auth, colon in password", auth: &Auth{Auth: b64("u:p:q")}, host: "r.example.com", user: "u", pass: "p:q"},
		{name: "username wins over auth", auth: &Auth{Username: "u", Password: "p", Auth: b64("x:y")}, host: "r.example.com", user: "u", pass: "p"},
		{name: "bad base64", auth: &Auth{Auth: "not base64!"}, host: "r.example.com", invalid: true},
		{name: "base64 without colon", auth: &Auth{Auth: b64("justuser")}, host: "r.example.com", invalid: true},
		{name: "identity token", auth: &Auth{IdentityToken: "refresh"}, host: "r.example.com", user: "", pass: "refresh"},
		{name: "identity token wins over username", auth: &Auth{Username: "u", Password: "p", IdentityToken: "refresh"}, host: "r.example.com", pass: "refresh"},
		{name: "registry token is not a credential", auth: &Auth{RegistryToken: "bearer"}, host: "r.example.com"},

		{name: "server address matches host", auth: &Auth{Username: "u", Password: "p", ServerAddress: "r.example.com"}, host: "r.example.com", user: "u", pass: "p"},
		{name: "server address with scheme and path", auth: &Auth{Username: "u", Password: "p", ServerAddress: "https://r.example.com/v2/"}, host: "r.example.com", user: "u", pass: "p"},
		{name: "server address with http scheme", auth: &Auth{Username: "u", Password: "p", ServerAddress: "http://r.example.com:5000"}, host: "r.example.com:5000", user: "u", pass: "p"},
		{name: "server address of another host", auth: &Auth{Username: "u", Password: "p", ServerAddress: "other.example.com"}, host: "r.example.com"},
		{name: "server address port differs", auth: &Auth{Username: "u", Password: "p", ServerAddress: "r.example.com:5000"}, host: "r.example.com"},
		{name: "server address of another host, bad auth not decoded", auth: &Auth{Auth: "!!", ServerAddress: "other.example.com"}, host: "r.example.com"},
		{name: "docker hub v1 address", auth: &Auth{Username: "u", Password: "p", ServerAddress: "https://index.docker.io/v1/"}, host: "registry-1.docker.io", user: "u", pass: "p"},
		{name: "docker.io address", auth: &Auth{Username: "u", Password: "p", ServerAddress: "docker.io"}, host: "registry-1.docker.io", user: "u", pass: "p"},
		{name: "index.docker.io address", auth: &Auth{Auth: b64("u:p"), ServerAddress: "index.docker.io"}, host: "registry-1.docker.io", user: "u", pass: "p"},
		{name: "docker hub address, other host", auth: &Auth{Username: "u", Password: "p", ServerAddress: "https://index.docker.io/v1/"}, host: "ghcr.io"},
		{name: "docker hub address, identity token", auth: &Auth{IdentityToken: "refresh", ServerAddress: "https://index.docker.io/v1/"}, host: "registry-1.docker.io", pass: "refresh"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user, pass, err := tc.auth.credentials(tc.host)
			if tc.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("credentials(%s) error = %v, want InvalidArgument", tc.host, err)
				}
				if user != "" || pass != "" {
					t.Errorf("credentials(%s) = %q, %q with an error", tc.host, user, pass)
				}
				return
			}
			if err != nil {
				t.Fatalf("credentials(%s): %v", tc.host, err)
			}
			if user != tc.user || pass != tc.pass {
				t.Errorf("credentials(%s) = %q, %q; want %q, %q", tc.host, user, pass, tc.user, tc.pass)
			}
		})
	}
}

func TestAuthHeaders(t *testing.T) {
	if h := (*Auth)(nil).headers(); h != nil {
		t.Errorf("nil auth headers = %v", h)
	}
	if h := (&Auth{Username: "u", Password: "p"}).headers(); h != nil {
		t.Errorf("username/password headers = %v, want none", h)
	}
	h := (&Auth{RegistryToken: "tok"}).headers()
	if got := h.Get("Authorization"); got != "Bearer tok" {
		t.Errorf("Authorization = %q, want %q", got, "Bearer tok")
	}
}

func TestAuthFingerprint(t *testing.T) {
	auths := []*Auth{
		nil,
		{Username: "u", Password: "p"},
		{Username: "u", Password: "q"},
		{Username: "v", Password: "p"},
		{Username: "u:p"},
		{Username: "u", Password: "p", ServerAddress: "r.example.com"},
		{Auth: b64("u:p")},
		{IdentityToken: "t"},
		{RegistryToken: "t"},
		{Password: "t"},
		// Fields must not run into each other.
		{Username: "ab", Password: "c"},
		{Username: "a", Password: "bc"},
	}
	seen := map[string]int{}
	for i, a := range auths {
		fp := a.fingerprint()
		if j, ok := seen[fp]; ok {
			t.Errorf("auth %d (%+v) and %d (%+v) share fingerprint %q", i, a, j, auths[j], fp)
		}
		seen[fp] = i
		if a != nil {
			same := *a
			if again := same.fingerprint(); again != fp {
				t.Errorf("fingerprint of %+v not stable: %q then %q", a, fp, again)
			}
			if fp == "" {
				t.Errorf("fingerprint of %+v is empty", a)
			}
			for _, secret := range []string{a.Password, a.IdentityToken, a.RegistryToken} {
				if len(secret) > 3 && strings.Contains(fp, secret) {
					t.Errorf("fingerprint %q shows a secret", fp)
				}
			}
		}
	}
	if (*Auth)(nil).fingerprint() != "" {
		t.Errorf("nil fingerprint = %q, want empty", (*Auth)(nil).fingerprint())
	}
}

// registry is an in-memory registry for the progress watch, on the test's
// virtual clock (testing/synctest): /stall (a few bytes, then nothing until
// the request is cancelled), /trickle (a byte every 20 ms for 500 ms),
// /small (a few bytes); any other path is refused as a closed port is.
// On real time and a real socket, a loaded machine stretched the trickle's
// 25 pauses past the test's bound, or one pause past the watch's timeout.
type registry struct{}

func (registry) RoundTrip(req *http.Request) (*http.Response, error) {
	var body io.Reader
	switch req.URL.Path {
	case "/stall":
		body = io.MultiReader(strings.NewReader("some bytes"), &stalled{ctx: req.Context()})
	case "/trickle":
		body = &trickle{ctx: req.Context(), left: 25}
	case "/small":
		body = strings.NewReader("done")
	default:
		return nil, errors.New("connection refused")
	}
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(body), Request: req}, nil
}

// stalled reads nothing until its request is cancelled.
type stalled struct{ ctx context.Context }

func (s *stalled) Read([]byte) (int, error) {
	<-s.ctx.Done()
	return 0, s.ctx.Err()
}

// trickle reads a byte every 20 ms until left is spent.
type trickle struct {
	ctx  context.Context
	left int
}

func (r *trickle) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	select {
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	case <-time.After(20 * time.Millisecond):
	}
	r.left--
	p[0] = 'x'
	return 1, nil
}

const (
	watchTimeout = 300 * time.Millisecond
	// quietWait is how long a test waits to see that the watch does not
	// cancel: past the timeout by two of the watch's ticks (timeout/4).
	quietWait = watchTimeout + watchTimeout/2
)

// watched gives a context cancelled by a progress watch, and a client
// whose downloads the watch follows.
func watched(t *testing.T) (context.Context, *progressWatch, *http.Client) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	w := newProgressWatch(watchTimeout, cancel)
	t.Cleanup(w.stop)
	return ctx, w, &http.Client{Transport: w.wrap(registry{})}
}

// get starts a GET and reads its body in the background until EOF or error.
func get(t *testing.T, ctx context.Context, c *http.Client, url string) <-chan error {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- err
	}()
	return done
}

// The watch runs on the virtual clock of a synctest bubble, so the times
// below are exact: each case holds on any machine, however loaded.
func TestProgressWatch(t *testing.T) {
	const url = "http://registry.test"
	bubble := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, f)
		})
	}

	bubble("stalled download is cancelled", func(t *testing.T) {
		ctx, w, c := watched(t)
		start := time.Now()
		read := get(t, ctx, c, url+"/stall")
		<-ctx.Done()
		// The watch ticks every timeout/4: it sees the stall at its first
		// tick past the timeout.
		if took, want := time.Since(start), watchTimeout+watchTimeout/4; took != want {
			t.Errorf("cancelled after %s of no progress, want %s", took, want)
		}
		if cause := context.Cause(ctx); !errors.Is(cause, errNoProgress) {
			t.Errorf("cause = %v, want errNoProgress", cause)
		}
		if w.bytes.Load() != int64(len("some bytes")) {
			t.Errorf("counted %d bytes, want %d", w.bytes.Load(), len("some bytes"))
		}
		// The cancellation ends the stalled read.
		if err := <-read; err == nil {
			t.Error("stalled read ended without an error")
		}
	})

	bubble("steady download is not cancelled", func(t *testing.T) {
		ctx, w, c := watched(t)
		start := time.Now()
		if err := <-get(t, ctx, c, url+"/trickle"); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 500*time.Millisecond {
			t.Errorf("the trickle took %s, want 500ms", took)
		}
		if w.bytes.Load() != 25 {
			t.Errorf("counted %d bytes, want 25", w.bytes.Load())
		}
		if ctx.Err() != nil {
			t.Errorf("cancelled: %v", context.Cause(ctx))
		}
	})

	bubble("nothing in flight is not cancelled", func(t *testing.T) {
		ctx, w, c := watched(t)
		// A finished request (body read and closed) is not in flight either.
		if err := <-get(t, ctx, c, url+"/small"); err != nil {
			t.Fatal(err)
		}
		if n := w.inflight.Load(); n != 0 {
			t.Errorf("%d requests in flight after the body was closed", n)
		}
		time.Sleep(quietWait)
		if ctx.Err() != nil {
			t.Fatalf("cancelled with nothing in flight: %v", context.Cause(ctx))
		}
	})

	bubble("nothing in flight for too long is cancelled", func(t *testing.T) {
		// A hung unpack: the downloads ended, containerd never returns.
		ctx, _, c := watched(t)
		start := time.Now()
		if err := <-get(t, ctx, c, url+"/small"); err != nil {
			t.Fatal(err)
		}
		<-ctx.Done()
		if took, want := time.Since(start), unpackIdleFactor*watchTimeout+watchTimeout/4; took != want {
			t.Errorf("cancelled after %s with nothing in flight, want %s", took, want)
		}
		if cause := context.Cause(ctx); !errors.Is(cause, errNoProgress) {
			t.Errorf("cause = %v, want errNoProgress", cause)
		}
	})

	bubble("failed request is not in flight", func(t *testing.T) {
		ctx, w, c := watched(t)
		if err := <-get(t, ctx, c, url+"/refused"); err == nil {
			t.Fatal("a refused request succeeded")
		}
		if n := w.inflight.Load(); n != 0 {
			t.Errorf("%d requests in flight after a failed request", n)
		}
		time.Sleep(quietWait)
		if ctx.Err() != nil {
			t.Fatalf("cancelled after a failed request: %v", context.Cause(ctx))
		}
	})

	bubble("zero timeout never cancels", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		w := newProgressWatch(0, cancel)
		defer w.stop()
		c := &http.Client{Transport: w.wrap(registry{})}
		read := get(t, ctx, c, url+"/stall")
		time.Sleep(time.Hour)
		if ctx.Err() != nil {
			t.Fatalf("cancelled with no timeout: %v", context.Cause(ctx))
		}
		cancel(nil)
		<-read
	})
}
