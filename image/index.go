package image

import (
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one image as the CRI sees it: identified by its config digest,
// known under any number of references (tags and digests).
type Image struct {
	// ID is the digest of the image config ("sha256:…"), the CRI image ID.
	ID string
	// References are the normalized names the image is known by, sorted:
	// tags ("docker.io/library/busybox:1.36") and digests ("…@sha256:…").
	References []string
	// Target is the descriptor the references point to (index or manifest).
	Target ocispec.Descriptor
	// Size is the size of the image's content for this platform, in bytes.
	Size int64
	// Config is the image's runtime configuration (user, env, entrypoint, …).
	Config ocispec.ImageConfig
	// ChainID identifies the unpacked root filesystem snapshot.
	ChainID string

	content *imageContent // for Handle; nil for an Image not from the index
}

// RepoTags returns the references that are tags.
func (i *Image) RepoTags() []string { return i.refs(false) }

// RepoDigests returns the references that are digests.
func (i *Image) RepoDigests() []string { return i.refs(true) }

func (i *Image) refs(digests bool) []string {
	var out []string
	for _, r := range i.References {
		if strings.Contains(r, "@") == digests {
			out = append(out, r)
		}
	}
	return out
}

var (
	idPattern     = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	hexPrefixOnly = regexp.MustCompile(`^[a-f0-9]{3,64}$`)
)

// index is the in-memory view of peapod's images, rebuilt from containerd's
// image records at start-up and kept current by pulls and removals. It serves
// ImageStatus and ListImages without a round trip to containerd.
type index struct {
	mu   sync.RWMutex
	byID map[string]*Image
	refs map[string]string // reference → image ID
}

func newIndex() *index {
	return &index{byID: map[string]*Image{}, refs: map[string]string{}}
}

// put records that ref names img, moving ref off any image it named before.
// Images left without references are dropped.
func (x *index) put(ref string, img *Image) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.refs[ref]; ok && old != img.ID {
		x.dropRefLocked(ref)
	}
	cur, ok := x.byID[img.ID]
	if !ok {
		cur = &Image{ID: img.ID, Target: img.Target, Size: img.Size, Config: img.Config, ChainID: img.ChainID}
		x.byID[img.ID] = cur
	}
	if !slices.Contains(cur.References, ref) {
		// Copy on write: readers may hold the old slice.
		refs := append(slices.Clone(cur.References), ref)
		slices.Sort(refs)
		cur.References = refs
	}
	x.refs[ref] = img.ID
}

// dropRef forgets ref.
func (x *index) dropRef(ref string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropRefLocked(ref)
}

func (x *index) dropRefLocked(ref string) {
	id, ok := x.refs[ref]
	if !ok {
		return
	}
	delete(x.refs, ref)
	img := x.byID[id]
	refs := slices.DeleteFunc(slices.Clone(img.References), func(r string) bool { return r == ref })
	if len(refs) == 0 {
		delete(x.byID, id)
		return
	}
	img.References = refs
}

// lookup finds an image by ID, by reference (normalized the way the CRI
// does: "busybox" is "docker.io/library/busybox:latest"), or by a unique
// prefix of its ID's hex digits.
func (x *index) lookup(name string) (Image, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if idPattern.MatchString(name) {
		return x.getLocked(name)
	}
	if ref, err := normalize(name); err == nil {
		if id, ok := x.refs[ref]; ok {
			return x.getLocked(id)
		}
	}
	if hex := strings.TrimPrefix(name, "sha256:"); hexPrefixOnly.MatchString(hex) {
		var found []string
		for id := range x.byID {
			if strings.HasPrefix(id, "sha256:"+hex) {
				found = append(found, id)
			}
		}
		if len(found) == 1 {
			return x.getLocked(found[0])
		}
	}
	return Image{}, false
}

func (x *index) getLocked(id string) (Image, bool) {
	img, ok := x.byID[id]
	if !ok {
		return Image{}, false
	}
	return *img, true
}

// list returns every image, sorted by ID.
func (x *index) list() []Image {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]Image, 0, len(x.byID))
	for _, img := range x.byID {
		out = append(out, *img)
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// normalize returns the canonical form of an image reference:
// "busybox" → "docker.io/library/busybox:latest"; digests are kept.
func normalize(name string) (string, error) {
	named, err := reference.ParseDockerRef(name)
	if err != nil {
		return "", err
	}
	return named.String(), nil
}
