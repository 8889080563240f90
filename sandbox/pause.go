package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/pause"
)

// BuiltinPauseRepository is the repository of peapod's built-in pause image.
const BuiltinPauseRepository = "peapod.local/pause"

// pauseImage returns the configured pause image, pulling it if missing. On
// an air-gapped node where it cannot be pulled, it falls back to peapod's
// built-in pause image, so that pods still start.
func (m *Manager) pauseImage(ctx context.Context) (client.Image, error) {
	img, err := m.images.Get(ctx, m.config.PauseImage)
	if errdefs.IsNotFound(err) {
		if _, perr := m.images.Pull(ctx, m.config.PauseImage, nil); perr != nil {
			klog.InfoS("Pause image unavailable; using peapod's built-in pause", "image", m.config.PauseImage, "err", perr)
			return m.builtinPause(ctx)
		}
		img, err = m.images.Get(ctx, m.config.PauseImage)
	}
	if err != nil {
		return nil, err
	}
	return m.images.Handle(ctx, img)
}

// builtinPause returns peapod's own pause image, creating it in containerd
// when missing: one layer holding the static peapod-io binary as /pause. Its
// tag is derived from the binary, so an upgraded peapod brings a new image.
func (m *Manager) builtinPause(ctx context.Context) (client.Image, error) {
	bin, err := os.ReadFile(m.config.PauseBinary)
	if err != nil {
		return nil, fmt.Errorf("reading %s for the built-in pause image: %w", m.config.PauseBinary, err)
	}
	sum := sha256.Sum256(bin)
	ref := BuiltinPauseRepository + ":" + hex.EncodeToString(sum[:6])
	img, err := m.images.Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		layer, lerr := singleFileLayer("pause", bin)
		if lerr != nil {
			return nil, lerr
		}
		img, err = m.images.Create(ctx, ref, layer, ocispec.ImageConfig{
			Entrypoint: []string{"/pause", pause.Command},
			User:       "65535:65535",
		})
	}
	if err != nil {
		return nil, fmt.Errorf("built-in pause image %s: %w", ref, err)
	}
	return m.images.Handle(ctx, img)
}

// singleFileLayer is an uncompressed layer holding one executable file.
func singleFileLayer(name string, data []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
