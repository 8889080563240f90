// Package image owns container images: pulling them through containerd
// (registry mirrors and auth from a hosts.toml directory), unpacking them for
// the runtime, and answering what images exist under which names.
//
// containerd's image records are the source of truth: one record per
// reference (tag or digest), all pointing at the pulled manifest. An
// in-memory index of them, keyed by image ID (the config digest), serves the
// kubelet's frequent ImageStatus/ListImages calls.
package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
)

// Snapshotter is the containerd snapshotter images are unpacked into.
const Snapshotter = "overlayfs"

// Config configures the image Service.
type Config struct {
	// RegistryConfigPath is a directory of <host>/hosts.toml files.
	RegistryConfigPath string
	// PullProgressTimeout fails a pull that transfers nothing for this long.
	PullProgressTimeout time.Duration
	// PinnedImages are references the kubelet must never garbage-collect
	// (the pause image).
	PinnedImages []string
}

// Service manages the images in peapod's containerd namespace.
type Service struct {
	client   *client.Client
	config   Config
	platform platforms.MatchComparer

	index *index
	pulls singleflight.Group
	// via is how pulls go (a pullVia), once containerd has said.
	via atomic.Int32
	// leasesEnding is held shared by each pull's lease while it ends.
	leasesEnding sync.RWMutex

	fsMu    sync.Mutex
	fsUsage *FsUsage
}

// New returns a Service. Its index is loaded from containerd by Recover,
// which must succeed before any other method is called.
func New(c *client.Client, cfg Config) *Service {
	return &Service{client: c, config: cfg, platform: platforms.Default(), index: newIndex()}
}

// Recover rebuilds the index from containerd's image records, at start-up
// before the CRI is served. It may be called again after an error.
func (s *Service) Recover(ctx context.Context) error {
	records, err := s.client.ImageService().List(ctx)
	if err != nil {
		return fmt.Errorf("listing images in containerd: %w", err)
	}
	for _, rec := range records {
		img, err := s.inspect(ctx, rec)
		if err != nil {
			// Content removed behind containerd's back, or a pull that never
			// finished: not usable, so not listed; a new pull repairs it.
			klog.InfoS("Skipping unusable image record", "ref", rec.Name, "err", err)
			continue
		}
		s.index.put(rec.Name, img)
	}
	klog.V(2).InfoS("Loaded image index", "records", len(records), "images", len(s.index.list()))
	return nil
}

// inspect reads what the CRI needs of an image record from the content store.
func (s *Service) inspect(ctx context.Context, rec images.Image) (*Image, error) {
	// The manifests are read twice, for the config and for the size.
	cs := s.newBlobCache()
	manifest, err := images.Manifest(ctx, cs, rec.Target, s.platform)
	if err != nil {
		return nil, fmt.Errorf("reading manifest of %s: %w", rec.Name, err)
	}
	raw, err := content.ReadBlob(ctx, cs, manifest.Config)
	if err != nil {
		return nil, fmt.Errorf("reading config of %s: %w", rec.Name, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("decoding config of %s: %w", rec.Name, err)
	}
	size, err := rec.Size(ctx, cs, s.platform)
	if err != nil {
		return nil, fmt.Errorf("sizing %s: %w", rec.Name, err)
	}
	return &Image{
		ID:      manifest.Config.Digest.String(),
		Target:  rec.Target,
		Size:    size,
		Config:  cfg.Config,
		ChainID: identity.ChainID(cfg.RootFS.DiffIDs).String(),
		content: &imageContent{config: manifest.Config, raw: raw, diffIDs: cfg.RootFS.DiffIDs},
	}, nil
}

// Get returns the image known by name (ID, reference or unique ID prefix),
// or an error wrapping errdefs.ErrNotFound.
func (s *Service) Get(ctx context.Context, name string) (Image, error) {
	img, ok := s.index.lookup(name)
	if !ok {
		return Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return img, nil
}

// Handle returns the containerd client's view of img, for creating
// snapshots and specs from it. What those read of the image (its root
// filesystem's diff IDs, its config) is answered from the index, without
// a round trip to containerd: on the pod start path, the client would
// otherwise read the record, the manifest and the config, twice over.
func (s *Service) Handle(ctx context.Context, img Image) (client.Image, error) {
	if len(img.References) == 0 {
		return nil, fmt.Errorf("image %s has no references: %w", img.ID, errdefs.ErrNotFound)
	}
	rec := images.Image{Name: img.References[0], Target: img.Target}
	h := client.NewImageWithPlatform(s.client, rec, s.platform)
	if img.content == nil {
		return h, nil
	}
	return &handle{Image: h, content: img.content}, nil
}

// imageContent is what snapshot and spec creation read of an image.
type imageContent struct {
	config  ocispec.Descriptor
	raw     []byte // the config blob
	diffIDs []digest.Digest
}

// handle is a client.Image whose root filesystem and config are known.
type handle struct {
	client.Image
	content *imageContent
}

func (h *handle) RootFS(context.Context) ([]digest.Digest, error) {
	return slices.Clone(h.content.diffIDs), nil
}

func (h *handle) Config(context.Context) (ocispec.Descriptor, error) {
	return h.content.config, nil
}

// ContentStore serves the config blob from memory, and the rest from
// containerd's content store.
func (h *handle) ContentStore() content.Store {
	return &configStore{Store: h.Image.ContentStore(), content: h.content}
}

type configStore struct {
	content.Store
	content *imageContent
}

func (s *configStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if desc.Digest == s.content.config.Digest {
		return readerAt{bytes.NewReader(s.content.raw)}, nil
	}
	return s.Store.ReaderAt(ctx, desc)
}

// blobCache is a content.Provider of small blobs (manifests and configs,
// never layers) that reads each from containerd once, in one round trip: the
// content store's ReaderAt first asks containerd the blob's size, which the
// descriptor already gives.
type blobCache struct {
	api   contentapi.ContentClient // nil: read through store
	store content.Provider
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
}

func (s *Service) newBlobCache() *blobCache {
	c := &blobCache{store: s.client.ContentStore(), blobs: map[digest.Digest][]byte{}}
	if conn, ok := s.client.Conn().(grpc.ClientConnInterface); ok {
		c.api = contentapi.NewContentClient(conn)
	}
	return c
}

func (c *blobCache) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.blobs[desc.Digest]
	if !ok {
		var err error
		if b, err = c.read(ctx, desc); err != nil {
			return nil, err
		}
		c.blobs[desc.Digest] = b
	}
	return readerAt{bytes.NewReader(b)}, nil
}

func (c *blobCache) read(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if c.api == nil {
		return content.ReadBlob(ctx, c.store, desc)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.Read(ctx, &contentapi.ReadContentRequest{Digest: desc.Digest.String(), Size: desc.Size})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	b := make([]byte, 0, min(desc.Size, 1<<20))
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errgrpc.ToNative(err)
		}
		b = append(b, resp.Data...)
	}
	if int64(len(b)) != desc.Size {
		return nil, fmt.Errorf("blob %s has %d bytes, its descriptor says %d: %w", desc.Digest, len(b), desc.Size, errdefs.ErrFailedPrecondition)
	}
	return b, nil
}

// readerAt is a content.ReaderAt over bytes in memory.
type readerAt struct{ *bytes.Reader }

func (readerAt) Close() error { return nil }

// List returns all images.
func (s *Service) List(ctx context.Context) ([]Image, error) {
	return s.index.list(), nil
}

// Pinned reports whether the kubelet must not garbage-collect img: it is
// known by one of Config.PinnedImages, given as a reference or, to pin every
// tag, as a bare repository.
func (s *Service) Pinned(img Image) bool {
	for _, p := range s.config.PinnedImages {
		ref, err := normalize(p)
		if err != nil {
			continue
		}
		repo := strings.TrimSuffix(ref, ":latest")
		for _, r := range img.References {
			if r == ref || (repo != ref && strings.HasPrefix(r, repo+":")) {
				return true
			}
		}
	}
	return false
}

// Remove deletes the image known by name with all its references, as the
// CRI requires. An image that does not exist is not an error.
func (s *Service) Remove(ctx context.Context, name string) error {
	img, err := s.Get(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	// The leases of pulls that have answered but not yet ended would keep
	// content from the collection below.
	s.leasesEnding.Lock()
	s.leasesEnding.Unlock()
	is := s.client.ImageService()
	for i, ref := range img.References {
		var opts []images.DeleteOpt
		if i == len(img.References)-1 {
			// Let containerd's garbage collector free the content before we
			// answer, so ImageFsInfo reflects the removal.
			opts = append(opts, images.SynchronousDelete())
		}
		if err := is.Delete(ctx, ref, opts...); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("removing image %s (%s): %w", ref, img.ID, err)
		}
		s.index.dropRef(ref)
	}
	s.invalidateFsUsage()
	return nil
}

// record creates or updates the containerd image record ref → target.
func (s *Service) record(ctx context.Context, ref string, target ocispec.Descriptor) error {
	is := s.client.ImageService()
	rec := images.Image{Name: ref, Target: target}
	if _, err := is.Create(ctx, rec); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return err
		}
		if _, err := is.Update(ctx, rec, "target"); err != nil {
			return err
		}
	}
	return nil
}

// digestRef returns "<repository>@<digest>" for a normalized reference.
func digestRef(ref string, d digest.Digest) (string, error) {
	named, err := parseNamed(ref)
	if err != nil {
		return "", err
	}
	return named.Name() + "@" + d.String(), nil
}

// errNoProgress ends a pull that stalled; it is a deadline (the progress
// deadline) to the caller.
var errNoProgress = fmt.Errorf("image pull made no progress: %w", context.DeadlineExceeded)
