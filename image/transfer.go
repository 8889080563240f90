package image

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/transfer"
	transferimage "github.com/containerd/containerd/v2/core/transfer/image"
	transferregistry "github.com/containerd/containerd/v2/core/transfer/registry"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/klog/v2"
)

// pullVia is the way pulls reach the registry.
type pullVia int32

const (
	viaUnknown pullVia = iota
	// viaClient fetches and unpacks from peapod, through containerd's
	// content, snapshot and diff services: a round trip per blob and layer.
	viaClient
	// viaTransfer has containerd's transfer service fetch and unpack, in
	// one call.
	viaTransfer
)

func (v pullVia) String() string {
	switch v {
	case viaClient:
		return "client"
	case viaTransfer:
		return "transfer service"
	}
	return "unknown"
}

// transferMinMajor is the first containerd whose transfer service honours
// the hosts directory a pull names: 1.7's ignores it and would take pulls
// past the configured mirrors, to the registries themselves.
const transferMinMajor = 2

// pullWay answers how pulls go, asking containerd the first time: through
// the transfer service where containerd is new enough and serves it (and
// the streaming service that carries its progress and credentials), else
// through the client. An answer that could not be had is not remembered.
func (s *Service) pullWay(ctx context.Context) pullVia {
	if v := pullVia(s.via.Load()); v != viaUnknown {
		return v
	}
	v, err := detectPullWay(ctx, s.client)
	if err != nil {
		klog.ErrorS(err, "Asking containerd whether it serves image transfers; pulling through the client")
		return viaClient
	}
	if s.via.CompareAndSwap(int32(viaUnknown), int32(v)) {
		klog.InfoS("Image pulls go through", "via", v)
	}
	return v
}

func detectPullWay(ctx context.Context, c *client.Client) (pullVia, error) {
	ver, err := c.Version(ctx)
	if err != nil {
		return viaUnknown, fmt.Errorf("containerd version: %w", err)
	}
	if major(ver.Version) < transferMinMajor {
		return viaClient, nil
	}
	resp, err := c.IntrospectionService().Plugins(ctx,
		"type==io.containerd.grpc.v1,id==transfer", "type==io.containerd.grpc.v1,id==streaming")
	if err != nil {
		return viaUnknown, fmt.Errorf("containerd plugins: %w", err)
	}
	loaded := map[string]bool{}
	for _, p := range resp.Plugins {
		loaded[p.ID] = p.InitErr == nil
	}
	if loaded["transfer"] && loaded["streaming"] {
		return viaTransfer, nil
	}
	return viaClient, nil
}

// major reads the major number of a containerd version ("v2.4.2",
// "2.0.0-rc.1", "1.7.27~ds1"); 0 when it has none.
func major(version string) int {
	v := strings.TrimPrefix(version, "v")
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		v = v[:end]
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0
	}
	return n
}

// pullTransfer pulls ref through containerd's transfer service, which
// fetches, unpacks and records the image inside containerd, and returns its
// record. ctx carries peapod's lease, which containerd uses rather than its
// own; fail ends the pull with a cause.
func (s *Service) pullTransfer(ctx context.Context, ref string, auth *Auth, watch *progressWatch, fail context.CancelCauseFunc) (images.Image, error) {
	// containerd reads the hosts directory itself, on the same host.
	opts := []transferregistry.Opt{transferregistry.WithHostDir(s.config.RegistryConfigPath)}
	if h := auth.headers(); h != nil {
		opts = append(opts, transferregistry.WithHeaders(h))
	}
	if auth.hasCredentials() {
		opts = append(opts, transferregistry.WithCredentials(transferCredentials{auth: auth, fail: fail}))
	}
	src, err := transferregistry.NewOCIRegistry(ctx, ref, opts...)
	if err != nil {
		return images.Image{}, err
	}
	// One manifest for this platform, unpacked into peapod's snapshotter,
	// as client.Pull with WithPullUnpack does.
	platform := platforms.DefaultSpec()
	dst := transferimage.NewStore(ref,
		transferimage.WithPlatforms(platform),
		transferimage.WithManifestLimit(1),
		transferimage.WithUnpack(platform, Snapshotter),
	)
	tw := newTransferWatch(watch, ref)
	if err := s.client.Transfer(ctx, src, dst, transfer.WithProgress(tw.progress)); err != nil {
		return images.Image{}, err
	}
	// containerd reports the record it saved before it answers, but the
	// report may come after the answer.
	if target, ok := tw.savedTarget(); ok {
		return images.Image{Name: ref, Target: target}, nil
	}
	return s.client.ImageService().Get(ctx, ref)
}

// ensureUnpacked unpacks img where the transfer service did not: it skips
// (and only logs) an unpack its configuration has no platform or
// snapshotter for.
func (s *Service) ensureUnpacked(ctx context.Context, rec images.Image, img *Image) error {
	if img.ChainID == "" {
		return nil // no layers
	}
	_, err := s.client.SnapshotService(Snapshotter).Stat(ctx, img.ChainID)
	if err == nil {
		return nil
	}
	if !errdefs.IsNotFound(err) {
		return fmt.Errorf("looking for the unpacked image %s: %w", rec.Name, err)
	}
	klog.InfoS("containerd's transfer service did not unpack the image; unpacking it", "ref", rec.Name, "snapshotter", Snapshotter)
	if err := client.NewImageWithPlatform(s.client, rec, s.platform).Unpack(ctx, Snapshotter); err != nil {
		return fmt.Errorf("unpacking image %s: %w", rec.Name, err)
	}
	return nil
}

// transferCredentials answers containerd's credential requests for a
// transfer-service pull.
type transferCredentials struct {
	auth *Auth
	fail context.CancelCauseFunc
}

func (c transferCredentials) GetCredentials(_ context.Context, _, host string) (transferregistry.Credentials, error) {
	user, secret, err := c.auth.credentials(host)
	if err != nil {
		// containerd would wait forever for the answer an error does not
		// send: end the pull with the error instead.
		c.fail(err)
		return transferregistry.Credentials{Host: host}, nil
	}
	return transferregistry.Credentials{Host: host, Username: user, Secret: secret}, nil
}

// transferWatch follows a transfer-service pull by its progress events:
// it feeds the progress watch, and notes the image record containerd saved.
//
// containerd reports a blob when its download starts ("waiting"), every
// 300 ms while it grows ("downloading"), and when it is done ("complete",
// "already exists", or, for a layer, "extracting" and "extracted" while and
// once it is applied). A blob is in flight from its first report until it
// is done; before the first, the reference is being resolved, which is
// network work too. A layer whose extraction advances is progress, though
// not in flight. containerd sees a download grow as it stores it, a
// megabyte or so at a time: a download slower than that per progress
// timeout counts as stalled.
type transferWatch struct {
	w   *progressWatch
	ref string

	mu        sync.Mutex
	inflight  map[string]int64 // blob → bytes so far
	extracted map[string]int64 // layer → bytes applied
	saved     *ocispec.Descriptor
}

func newTransferWatch(w *progressWatch, ref string) *transferWatch {
	w.inflight.Store(1)
	return &transferWatch{w: w, ref: ref, inflight: map[string]int64{}, extracted: map[string]int64{}}
}

func (t *transferWatch) progress(p transfer.Progress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch p.Event {
	case "waiting", "downloading":
		prev, ok := t.inflight[p.Name]
		if !ok || p.Progress > prev {
			t.w.bytes.Add(max(p.Progress-prev, 0))
			t.inflight[p.Name] = max(p.Progress, prev)
			t.w.touch()
		}
	case "complete", "already exists":
		t.done(p.Name, p.Progress)
		t.w.touch()
	case "extracting", "extracted":
		t.done(p.Name, p.Total)
		if prev, ok := t.extracted[p.Name]; !ok || p.Progress > prev {
			t.extracted[p.Name] = p.Progress
			t.w.touch()
		}
	case "saved":
		if p.Name == t.ref && p.Desc != nil {
			t.saved = p.Desc
		}
		return
	default:
		// Resolving, pulling, completed: no blob.
		return
	}
	t.w.inflight.Store(int32(len(t.inflight)))
}

// done ends a blob's download.
func (t *transferWatch) done(name string, size int64) {
	if prev, ok := t.inflight[name]; ok {
		t.w.bytes.Add(max(size-prev, 0))
		delete(t.inflight, name)
	}
}

// savedTarget is the target of the image record containerd saved, if its
// report has come.
func (t *transferWatch) savedTarget() (ocispec.Descriptor, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.saved == nil {
		return ocispec.Descriptor{}, false
	}
	return *t.saved, true
}
