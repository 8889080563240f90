package image

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/metrics"
	"github.com/peapod-cri/peapod/oplease"
)

// Auth is the registry credential of a pull, as the CRI AuthConfig gives it.
type Auth struct {
	Username, Password string
	// Auth is base64("username:password").
	Auth string
	// ServerAddress, when set, limits the credential to that registry host.
	ServerAddress string
	// IdentityToken is an OAuth refresh token; RegistryToken a bearer token.
	IdentityToken, RegistryToken string
}

// Pull pulls and unpacks the image ref and returns its ID. Concurrent pulls
// of one reference with the same credentials share one download. The pull
// goes on if the caller gives up (its context ends), so a retry finds the
// image or joins the pull in progress; it fails only when it makes no
// progress for Config.PullProgressTimeout.
//
// Where containerd serves it (2.0 and newer), the pull goes through its
// transfer service, which fetches and unpacks inside containerd in one call;
// elsewhere (1.6, 1.7) through the client, which does it from here. Both
// honour the hosts directory, the credentials and the progress timeout.
func (s *Service) Pull(ctx context.Context, name string, auth *Auth) (string, error) {
	ref, err := normalize(name)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	if err := auth.validate(); err != nil {
		return "", fmt.Errorf("pulling %s: %w", ref, err)
	}
	key := ref + "\x00" + auth.fingerprint()
	ch := s.pulls.DoChan(key, func() (any, error) {
		return s.pull(context.WithoutCancel(ctx), ref, auth)
	})
	select {
	case <-ctx.Done():
		return "", fmt.Errorf("pulling %s: %w", ref, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return res.Val.(string), nil
	}
}

func (s *Service) pull(ctx context.Context, ref string, auth *Auth) (string, error) {
	start := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watch := newProgressWatch(s.config.PullProgressTimeout, cancel)
	defer watch.stop()
	// peapod's own lease keeps the pulled blobs until the image records
	// hold them; start-up ends it if peapod dies mid-pull.
	ctx, endLease, err := oplease.Begin(ctx, s.client.LeasesService(), "image-pull", "")
	if err != nil {
		return "", err
	}
	defer s.endLeaseLater(endLease)

	via := s.pullWay(ctx)
	done := metrics.Phase(opPull, "pull")
	var rec images.Image
	if via == viaTransfer {
		rec, err = s.pullTransfer(ctx, ref, auth, watch, cancel)
		if errdefs.IsNotImplemented(err) && ctx.Err() == nil {
			// containerd was replaced by one without the service.
			klog.InfoS("containerd serves no image transfers; pulling through the client", "ref", ref, "err", err)
			s.via.Store(int32(viaClient))
			via = viaClient
			watch.inflight.Store(0)
		}
	}
	if via == viaClient {
		rec, err = s.pullClient(ctx, ref, auth, watch)
	}
	done()
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			err = cause
		}
		return "", fmt.Errorf("pulling image %s: %w", ref, err)
	}

	// Name the image by digest too, so ImageStatus answers for
	// "repo@sha256:…" and the digest survives a restart; meanwhile read
	// what the index needs of the image.
	refs := []string{ref}
	var entry *Image
	var g errgroup.Group
	if !strings.Contains(ref, "@") {
		dref, err := digestRef(ref, rec.Target.Digest)
		if err != nil {
			return "", err
		}
		refs = append(refs, dref)
		g.Go(func() error {
			defer metrics.Phase(opPull, "record")()
			if err := s.record(ctx, dref, rec.Target); err != nil {
				return fmt.Errorf("recording %s: %w", dref, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		done := metrics.Phase(opPull, "inspect")
		var err error
		entry, err = s.inspect(ctx, rec)
		done()
		if err != nil || via != viaTransfer {
			return err
		}
		defer metrics.Phase(opPull, "unpack")()
		return s.ensureUnpacked(ctx, rec, entry)
	})
	if err := g.Wait(); err != nil {
		return "", err
	}
	for _, r := range refs {
		s.index.put(r, entry)
	}
	s.invalidateFsUsage()
	klog.V(2).InfoS("Pulled image", "ref", ref, "id", entry.ID, "via", via, "bytes", watch.bytes.Load(), "duration", time.Since(start))
	return entry.ID, nil
}

// endLeaseLater ends a pull's lease once the pull has answered: by then the
// image's records hold what the lease held, or, after a failure, nothing
// needs it. Remove waits for the leases still ending, so that the garbage
// collection it runs frees what they held.
func (s *Service) endLeaseLater(end func()) {
	s.leasesEnding.RLock()
	go func() {
		defer s.leasesEnding.RUnlock()
		end()
	}()
}

// pullClient pulls and unpacks ref with the containerd client, which
// fetches each blob from here and has containerd store and apply it, and
// returns the image's record.
func (s *Service) pullClient(ctx context.Context, ref string, auth *Auth, watch *progressWatch) (images.Image, error) {
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(ctx, config.HostOptions{
			HostDir:     config.HostDirFromRoot(s.config.RegistryConfigPath),
			Credentials: auth.credentials,
			UpdateClient: func(c *http.Client) error {
				c.Transport = watch.wrap(c.Transport)
				return nil
			},
		}),
		Headers: auth.headers(),
	})
	img, err := s.client.Pull(ctx, ref,
		client.WithResolver(resolver),
		client.WithPullUnpack,
		client.WithPullSnapshotter(Snapshotter),
		client.WithPlatformMatcher(s.platform),
	)
	if err != nil {
		return images.Image{}, err
	}
	return img.Metadata(), nil
}

// opPull names PullImage's phases in the metrics.
const opPull = "image_pull"

// parseNamed parses a normalized reference.
func parseNamed(ref string) (reference.Named, error) {
	return reference.ParseNormalizedNamed(ref)
}

// credentials answers the resolver's per-host credential question.
func (a *Auth) credentials(host string) (string, string, error) {
	if a == nil {
		return "", "", nil
	}
	if a.ServerAddress != "" && !sameHost(a.ServerAddress, host) {
		return "", "", nil
	}
	switch {
	case a.IdentityToken != "":
		// An empty user with a secret is a refresh token to the resolver.
		return "", a.IdentityToken, nil
	case a.Username != "" || a.Password != "":
		return a.Username, a.Password, nil
	case a.Auth != "":
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("auth for %s is not base64: %w", host, errdefs.ErrInvalidArgument)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "", fmt.Errorf("auth for %s is not user:password: %w", host, errdefs.ErrInvalidArgument)
		}
		return user, pass, nil
	}
	return "", "", nil
}

// hasCredentials reports whether credentials answers anything for some host.
func (a *Auth) hasCredentials() bool {
	return a != nil && (a.Username != "" || a.Password != "" || a.Auth != "" || a.IdentityToken != "")
}

// headers carries a registry bearer token, which needs no token exchange.
func (a *Auth) headers() http.Header {
	if a == nil || a.RegistryToken == "" {
		return nil
	}
	return http.Header{"Authorization": []string{"Bearer " + a.RegistryToken}}
}

// validate refuses credentials that cannot be sent: they go into HTTP
// headers, which hold no control characters.
func (a *Auth) validate() error {
	if a == nil {
		return nil
	}
	for field, v := range map[string]string{"username": a.Username, "password": a.Password, "auth": a.Auth,
		"server address": a.ServerAddress, "identity token": a.IdentityToken, "registry token": a.RegistryToken} {
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("the credentials' %s holds a control character: %w", field, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// fingerprint tells credentials apart without keeping them in a map key.
func (a *Auth) fingerprint() string {
	if a == nil {
		return ""
	}
	h := sha256.Sum256([]byte(strings.Join([]string{a.Username, a.Password, a.Auth, a.ServerAddress, a.IdentityToken, a.RegistryToken}, "\x00")))
	return hex.EncodeToString(h[:8])
}

// sameHost compares a CRI server address ("https://host/v1/", "host") with a
// registry host.
func sameHost(addr, host string) bool {
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "https://"), "http://")
	addr, _, _ = strings.Cut(addr, "/")
	if addr == "index.docker.io" || addr == "docker.io" {
		addr = "registry-1.docker.io"
	}
	return addr == host
}

// unpackIdleFactor times the progress timeout is how long a pull may go on
// with no download in flight (containerd unpacking, which reports no
// progress) before it is given up.
const unpackIdleFactor = 3

// progressWatch cancels a pull when, while downloads are in flight, no bytes
// arrive for the timeout. A client pull's downloads are its HTTP requests
// (wrap); a transfer-service pull's are the blobs containerd reports
// (transferWatch).
type progressWatch struct {
	timeout  time.Duration
	cancel   context.CancelCauseFunc
	bytes    atomic.Int64
	inflight atomic.Int32
	last     atomic.Int64 // unix nanoseconds of the last progress
	done     chan struct{}
}

func newProgressWatch(timeout time.Duration, cancel context.CancelCauseFunc) *progressWatch {
	w := &progressWatch{timeout: timeout, cancel: cancel, done: make(chan struct{})}
	w.touch()
	if timeout > 0 {
		go w.run()
	}
	return w
}

func (w *progressWatch) touch() { w.last.Store(time.Now().UnixNano()) }

func (w *progressWatch) run() {
	t := time.NewTicker(min(w.timeout/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
			idle := time.Since(time.Unix(0, w.last.Load()))
			if w.inflight.Load() == 0 {
				// Waiting on containerd (unpacking), not on the network: it
				// shows no progress, so it gets longer, but not forever: a
				// hung unpack would hold every later pull of the reference,
				// which joins the one in progress.
				if idle > unpackIdleFactor*w.timeout {
					w.cancel(fmt.Errorf("%w for %s with no download in flight (unpacking hung?)", errNoProgress, unpackIdleFactor*w.timeout))
					return
				}
				continue
			}
			if idle > w.timeout {
				w.cancel(fmt.Errorf("%w for %s (%d bytes received)", errNoProgress, w.timeout, w.bytes.Load()))
				return
			}
		}
	}
}

func (w *progressWatch) stop() { close(w.done) }

func (w *progressWatch) wrap(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		w.inflight.Add(1)
		w.touch()
		resp, err := rt.RoundTrip(req)
		if err != nil {
			w.inflight.Add(-1)
			return nil, err
		}
		resp.Body = &countingBody{ReadCloser: resp.Body, w: w}
		return resp, nil
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type countingBody struct {
	io.ReadCloser
	w      *progressWatch
	closed atomic.Bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.w.bytes.Add(int64(n))
		b.w.touch()
	}
	return n, err
}

func (b *countingBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.w.inflight.Add(-1)
	}
	return b.ReadCloser.Close()
}
