package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	goruntime "runtime"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/peapod-cri/peapod/oplease"
)

// Create makes a single-layer image named ref from an uncompressed layer
// tar and a runtime config, stores it in containerd, unpacks it, and
// returns it. peapod uses it for images it carries itself (its own pause).
func (s *Service) Create(ctx context.Context, ref string, layer []byte, cfg ocispec.ImageConfig) (Image, error) {
	ref, err := normalize(ref)
	if err != nil {
		return Image{}, err
	}
	// The lease keeps the blobs from containerd's garbage collector until
	// the image record references them.
	ctx, done, err := oplease.Begin(ctx, s.client.LeasesService(), "image-create", "")
	if err != nil {
		return Image{}, err
	}
	defer done()

	cs := s.client.ContentStore()
	layerDesc, err := writeBlob(ctx, cs, ocispec.MediaTypeImageLayer, layer, nil)
	if err != nil {
		return Image{}, err
	}
	config, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	})
	if err != nil {
		return Image{}, err
	}
	configDesc, err := writeBlob(ctx, cs, ocispec.MediaTypeImageConfig, config, nil)
	if err != nil {
		return Image{}, err
	}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return Image{}, err
	}
	// These labels tell the garbage collector what the manifest holds on to.
	manifestDesc, err := writeBlob(ctx, cs, ocispec.MediaTypeImageManifest, manifest, map[string]string{
		"containerd.io/gc.ref.content.config": configDesc.Digest.String(),
		"containerd.io/gc.ref.content.l.0":    layerDesc.Digest.String(),
	})
	if err != nil {
		return Image{}, err
	}
	if err := s.record(ctx, ref, manifestDesc); err != nil {
		return Image{}, fmt.Errorf("recording image %s: %w", ref, err)
	}
	rec := images.Image{Name: ref, Target: manifestDesc}
	if err := client.NewImageWithPlatform(s.client, rec, s.platform).Unpack(ctx, Snapshotter); err != nil {
		return Image{}, fmt.Errorf("unpacking image %s: %w", ref, err)
	}
	entry, err := s.inspect(ctx, rec)
	if err != nil {
		return Image{}, err
	}
	s.index.put(ref, entry)
	s.invalidateFsUsage()
	return s.Get(ctx, ref)
}

func writeBlob(ctx context.Context, cs content.Store, mediaType string, data []byte, labels map[string]string) (ocispec.Descriptor, error) {
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	var opts []content.Opt
	if labels != nil {
		opts = append(opts, content.WithLabels(labels))
	}
	if err := content.WriteBlob(ctx, cs, desc.Digest.String(), bytes.NewReader(data), desc, opts...); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("writing %s blob: %w", mediaType, err)
	}
	return desc, nil
}
