package image

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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

// registry serves /stall (a few bytes, then nothing until the client goes
// away), /trickle (a byte every 20 ms for 500 ms) and /small (a few bytes).
func registry(t *testing.T) *httptest.Server {
	t.Helper()
	quit := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte("some bytes"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	})
	mux.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		for range 25 {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("done"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { close(quit); srv.Close() })
	return srv
}

const (
	watchTimeout = 300 * time.Millisecond
	// quietWait is how long a test waits to see that the watch does not
	// cancel: past the timeout by two of the watch's ticks (timeout/4).
	quietWait = watchTimeout + watchTimeout/2
	// cancelWait bounds the wait for a cancellation that must come.
	cancelWait = 3 * watchTimeout
)

// watched returns a context cancelled by a progressWatch, and an HTTP client
// whose requests the watch sees.
func watched(t *testing.T) (context.Context, *progressWatch, *http.Client) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	w := newProgressWatch(watchTimeout, cancel)
	t.Cleanup(w.stop)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return ctx, w, &http.Client{Transport: w.wrap(tr)}
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

func TestProgressWatch(t *testing.T) {
	srv := registry(t)

	t.Run("stalled download is cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, w, c := watched(t)
		start := time.Now()
		read := get(t, ctx, c, srv.URL+"/stall")
		select {
		case <-ctx.Done():
		case <-time.After(cancelWait):
			t.Fatalf("not cancelled after %s of no progress (%d bytes)", time.Since(start), w.bytes.Load())
		}
		took := time.Since(start)
		if took < watchTimeout {
			t.Errorf("cancelled after %s, before the %s timeout", took, watchTimeout)
		}
		cause := context.Cause(ctx)
		if !errors.Is(cause, errNoProgress) {
			t.Errorf("cause = %v, want errNoProgress", cause)
		}
		if w.bytes.Load() != int64(len("some bytes")) {
			t.Errorf("counted %d bytes, want %d", w.bytes.Load(), len("some bytes"))
		}
		// The cancellation ends the stalled read.
		select {
		case err := <-read:
			if err == nil {
				t.Error("stalled read ended without an error")
			}
		case <-time.After(time.Second):
			t.Error("stalled read not ended by the cancellation")
		}
		t.Logf("cancelled after %s: %v", took, cause)
	})

	t.Run("steady download is not cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, w, c := watched(t)
		read := get(t, ctx, c, srv.URL+"/trickle")
		select {
		case <-ctx.Done():
			t.Fatalf("cancelled while bytes arrive: %v", context.Cause(ctx))
		case err := <-read:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(cancelWait):
			t.Fatal("trickle did not finish")
		}
		if w.bytes.Load() != 25 {
			t.Errorf("counted %d bytes, want 25", w.bytes.Load())
		}
		if ctx.Err() != nil {
			t.Errorf("cancelled: %v", context.Cause(ctx))
		}
	})

	t.Run("nothing in flight is not cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, w, c := watched(t)
		// A finished request (body read and closed) is not in flight either.
		if err := <-get(t, ctx, c, srv.URL+"/small"); err != nil {
			t.Fatal(err)
		}
		if n := w.inflight.Load(); n != 0 {
			t.Errorf("%d requests in flight after the body was closed", n)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("cancelled with nothing in flight: %v", context.Cause(ctx))
		case <-time.After(quietWait):
		}
	})

	t.Run("nothing in flight for too long is cancelled", func(t *testing.T) {
		t.Parallel()
		// A hung unpack: the downloads ended, containerd never returns.
		ctx, _, c := watched(t)
		if err := <-get(t, ctx, c, srv.URL+"/small"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		select {
		case <-ctx.Done():
		case <-time.After(unpackIdleFactor*watchTimeout + cancelWait):
			t.Fatalf("not cancelled after %s with nothing in flight", time.Since(start))
		}
		if took := time.Since(start); took < (unpackIdleFactor-1)*watchTimeout {
			t.Errorf("cancelled after %s, before %d times the timeout", took, unpackIdleFactor)
		}
		if cause := context.Cause(ctx); !errors.Is(cause, errNoProgress) {
			t.Errorf("cause = %v, want errNoProgress", cause)
		}
	})

	t.Run("failed request is not in flight", func(t *testing.T) {
		t.Parallel()
		ctx, w, c := watched(t)
		if err := <-get(t, ctx, c, "http://127.0.0.1:1/refused"); err == nil {
			t.Fatal("request to a closed port succeeded")
		}
		if n := w.inflight.Load(); n != 0 {
			t.Errorf("%d requests in flight after a failed request", n)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("cancelled after a failed request: %v", context.Cause(ctx))
		case <-time.After(quietWait):
		}
	})

	t.Run("zero timeout never cancels", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		w := newProgressWatch(0, cancel)
		defer w.stop()
		c := &http.Client{Transport: w.wrap(nil)}
		read := get(t, ctx, c, srv.URL+"/stall")
		select {
		case <-ctx.Done():
			t.Fatalf("cancelled with no timeout: %v", context.Cause(ctx))
		case <-time.After(quietWait):
		}
		cancel(nil)
		<-read
	})
}
