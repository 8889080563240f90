package image

import (
	"slices"
	"strings"
	"testing"
)

// Image IDs for the index tests; idA and idB share the prefix "abc".
var (
	idA = "sha256:abc1" + strings.Repeat("1", 60)
	idB = "sha256:abc2" + strings.Repeat("2", 60)
	idC = "sha256:def3" + strings.Repeat("3", 60)
	idD = "sha256:b" + strings.Repeat("4", 63) // sorts between idB and idC
)

const (
	busyboxLatest = "docker.io/library/busybox:latest"
	busybox10     = "docker.io/library/busybox:1.0"
	busyboxDigest = "docker.io/library/busybox@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	pause         = "registry.k8s.io/pause:3.10"
	otherImage    = "example.com/team/app:v2"
)

// testIndex holds idA as busybox (latest, 1.0 and a digest), idB as pause
// and idC as otherImage.
func testIndex() *index {
	x := newIndex()
	x.put(busyboxLatest, &Image{ID: idA, Size: 1})
	x.put(busybox10, &Image{ID: idA, Size: 1})
	x.put(busyboxDigest, &Image{ID: idA, Size: 1})
	x.put(pause, &Image{ID: idB, Size: 2})
	x.put(otherImage, &Image{ID: idC, Size: 3})
	return x
}

func TestIndexLookup(t *testing.T) {
	x := testIndex()
	cases := []struct {
		name string
		want string // image ID, "" for not found
	}{
		{idA, idA},
		{idB, idB},
		{"sha256:" + strings.Repeat("9", 64), ""}, // well-formed, unknown ID
		{"busybox", idA},
		{"busybox:latest", idA},
		{"library/busybox", idA},
		{"docker.io/busybox", idA},
		{busyboxLatest, idA},
		{"busybox:1.0", idA},
		{"busybox:2.0", ""},
		{"busybox@sha256:" + strings.Repeat("0123456789abcdef", 4), idA},
		{busyboxDigest, idA},
		{"registry.k8s.io/pause:3.10", idB},
		{"registry.k8s.io/pause", ""}, // :latest was never pulled
		{"example.com/team/app:v2", idC},
		{"def", idC},          // unique prefix
		{"sha256:def", idC},   // unique prefix with algorithm
		{"def3333", idC},      //
		{"abc1", idA},         //
		{"sha256:abc2", idB},  //
		{"abc", ""},           // ambiguous: idA and idB
		{"sha256:abc", ""},    // ambiguous
		{"ab", ""},            // too short to be a prefix
		{idA[7:], idA},        // the whole hex without the algorithm
		{"fff", ""},           // no such prefix
		{"sha256:fff", ""},    //
		{"nosuchimage", ""},   //
		{"Busybox", ""},       // not a valid reference, not hex
		{"", ""},              //
		{"sha256:", ""},       //
		{"example.com/", ""},  //
		{"abc1:latest", ""},   // a tag of an image named like a prefix
		{"DEF", ""},           // hex prefixes are lower case
		{"sha256:DEF333", ""}, //
	}
	for _, tc := range cases {
		img, ok := x.lookup(tc.name)
		switch {
		case tc.want == "" && ok:
			t.Errorf("lookup(%q) found %s, want not found", tc.name, img.ID)
		case tc.want != "" && !ok:
			t.Errorf("lookup(%q) not found, want %s", tc.name, tc.want)
		case tc.want != "" && img.ID != tc.want:
			t.Errorf("lookup(%q) = %s, want %s", tc.name, img.ID, tc.want)
		}
	}
}

// A reference that looks like a hex prefix is found as a reference first.
func TestIndexLookupReferenceBeforePrefix(t *testing.T) {
	x := newIndex()
	x.put("docker.io/library/abc:latest", &Image{ID: idC})
	x.put("example.com/x:1", &Image{ID: idA})
	if img, ok := x.lookup("abc"); !ok || img.ID != idC {
		t.Errorf("lookup(abc) = %v, %v; want %s by reference", img.ID, ok, idC)
	}
	if img, ok := x.lookup("abc1"); !ok || img.ID != idA {
		t.Errorf("lookup(abc1) = %v, %v; want %s by prefix", img.ID, ok, idA)
	}
}

func TestIndexRepoTagsAndDigests(t *testing.T) {
	x := testIndex()
	img, ok := x.lookup(idA)
	if !ok {
		t.Fatal("idA not found")
	}
	if want := []string{busybox10, busyboxLatest, busyboxDigest}; !slices.Equal(img.References, want) {
		t.Errorf("References = %q, want %q", img.References, want)
	}
	if want := []string{busybox10, busyboxLatest}; !slices.Equal(img.RepoTags(), want) {
		t.Errorf("RepoTags = %q, want %q", img.RepoTags(), want)
	}
	if want := []string{busyboxDigest}; !slices.Equal(img.RepoDigests(), want) {
		t.Errorf("RepoDigests = %q, want %q", img.RepoDigests(), want)
	}
	img, _ = x.lookup(idB)
	if len(img.RepoDigests()) != 0 || !slices.Equal(img.RepoTags(), []string{pause}) {
		t.Errorf("pause: RepoTags %q, RepoDigests %q", img.RepoTags(), img.RepoDigests())
	}
	digestOnly := Image{ID: idC, References: []string{busyboxDigest}}
	if len(digestOnly.RepoTags()) != 0 || !slices.Equal(digestOnly.RepoDigests(), []string{busyboxDigest}) {
		t.Errorf("digest-only image: RepoTags %q, RepoDigests %q", digestOnly.RepoTags(), digestOnly.RepoDigests())
	}
}

func ids(imgs []Image) []string {
	out := make([]string, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, img.ID)
	}
	return out
}

func TestIndexMoveTag(t *testing.T) {
	cases := []struct {
		name     string
		ops      func(x *index)
		wantIDs  []string
		wantRefs map[string][]string // image ID → references
		gone     []string            // names that must not be found
	}{
		{
			name:    "tag moves off an image with other refs: it stays",
			ops:     func(x *index) { x.put(busyboxLatest, &Image{ID: idB}) },
			wantIDs: []string{idA, idB, idC},
			wantRefs: map[string][]string{
				idA: {busybox10, busyboxDigest},
				idB: {busyboxLatest, pause},
				idC: {otherImage},
			},
		},
		{
			name:    "tag moves off an image with no other refs: it is dropped",
			ops:     func(x *index) { x.put(otherImage, &Image{ID: idB}) },
			wantIDs: []string{idA, idB},
			wantRefs: map[string][]string{
				idA: {busybox10, busyboxLatest, busyboxDigest},
				idB: {otherImage, pause},
			},
			gone: []string{idC, "def"},
		},
		{
			name:    "tag moves to a new image",
			ops:     func(x *index) { x.put(pause, &Image{ID: idD, Size: 4}) },
			wantIDs: []string{idA, idD, idC},
			wantRefs: map[string][]string{
				idD: {pause},
			},
			gone: []string{idB, "abc2"},
		},
		{
			name:    "putting the same ref twice is idempotent",
			ops:     func(x *index) { x.put(busyboxLatest, &Image{ID: idA}); x.put(pause, &Image{ID: idB}) },
			wantIDs: []string{idA, idB, idC},
			wantRefs: map[string][]string{
				idA: {busybox10, busyboxLatest, busyboxDigest},
				idB: {pause},
			},
		},
		{
			name:    "dropping one of several refs keeps the image",
			ops:     func(x *index) { x.dropRef(busybox10) },
			wantIDs: []string{idA, idB, idC},
			wantRefs: map[string][]string{
				idA: {busyboxLatest, busyboxDigest},
			},
			gone: []string{"busybox:1.0"},
		},
		{
			name: "dropping every ref drops the image",
			ops: func(x *index) {
				x.dropRef(busybox10)
				x.dropRef(busyboxDigest)
				x.dropRef(busyboxLatest)
			},
			wantIDs: []string{idB, idC},
			gone:    []string{idA, "busybox", "abc1"},
		},
		{
			name:    "dropping an unknown ref changes nothing",
			ops:     func(x *index) { x.dropRef("example.com/none:1"); x.dropRef(idA) },
			wantIDs: []string{idA, idB, idC},
			wantRefs: map[string][]string{
				idA: {busybox10, busyboxLatest, busyboxDigest},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := testIndex()
			tc.ops(x)
			if got := ids(x.list()); !slices.Equal(got, tc.wantIDs) {
				t.Errorf("list = %q, want %q", got, tc.wantIDs)
			}
			for id, want := range tc.wantRefs {
				img, ok := x.lookup(id)
				if !ok {
					t.Errorf("%s not found", id)
					continue
				}
				if !slices.Equal(img.References, want) {
					t.Errorf("%s References = %q, want %q", id, img.References, want)
				}
				for _, ref := range want {
					if got, ok := x.lookup(ref); !ok || got.ID != id {
						t.Errorf("lookup(%s) = %s, %v; want %s", ref, got.ID, ok, id)
					}
				}
			}
			for _, name := range tc.gone {
				if img, ok := x.lookup(name); ok {
					t.Errorf("lookup(%s) found %s, want not found", name, img.ID)
				}
			}
			// The refs map and the images agree.
			n := 0
			for _, img := range x.list() {
				n += len(img.References)
				if len(img.References) == 0 {
					t.Errorf("%s listed without references", img.ID)
				}
			}
			if n != len(x.refs) {
				t.Errorf("%d references on images, %d in the refs map", n, len(x.refs))
			}
		})
	}
}

func TestIndexList(t *testing.T) {
	if got := newIndex().list(); got == nil || len(got) != 0 {
		t.Errorf("empty index lists %v, want an empty non-nil slice", got)
	}
	x := newIndex()
	// Put in an order that is not the ID order.
	x.put(otherImage, &Image{ID: idC, Size: 3})
	x.put(busyboxLatest, &Image{ID: idA, Size: 1})
	x.put(pause, &Image{ID: idB, Size: 2})
	got := x.list()
	if want := []string{idA, idB, idC}; !slices.Equal(ids(got), want) {
		t.Errorf("list = %q, want %q", ids(got), want)
	}
	for i, size := range []int64{1, 2, 3} {
		if got[i].Size != size {
			t.Errorf("%s Size = %d, want %d", got[i].ID, got[i].Size, size)
		}
	}
}

// A returned Image is a snapshot: later puts and drops do not change it.
func TestIndexCopyOnWrite(t *testing.T) {
	x := newIndex()
	x.put(busyboxLatest, &Image{ID: idA})
	x.put(busyboxDigest, &Image{ID: idA})
	before, _ := x.lookup(idA)
	listed := x.list()[0]
	want := slices.Clone(before.References)

	x.put(busybox10, &Image{ID: idA})
	x.put("docker.io/library/busybox:0.1", &Image{ID: idA}) // sorts first
	x.dropRef(busyboxDigest)
	x.put(busyboxLatest, &Image{ID: idB})

	if !slices.Equal(before.References, want) {
		t.Errorf("looked-up References changed to %q, want %q", before.References, want)
	}
	if !slices.Equal(listed.References, want) {
		t.Errorf("listed References changed to %q, want %q", listed.References, want)
	}
	after, _ := x.lookup(idA)
	if want := []string{"docker.io/library/busybox:0.1", busybox10}; !slices.Equal(after.References, want) {
		t.Errorf("References now %q, want %q", after.References, want)
	}
}

// put keeps the first metadata recorded for an ID; the references are what
// change.
func TestIndexPutKeepsMetadata(t *testing.T) {
	x := newIndex()
	x.put(busyboxLatest, &Image{ID: idA, Size: 10, ChainID: "sha256:chain", References: []string{"ignored"}})
	img, _ := x.lookup(idA)
	if img.Size != 10 || img.ChainID != "sha256:chain" {
		t.Errorf("metadata = %d %q", img.Size, img.ChainID)
	}
	if !slices.Equal(img.References, []string{busyboxLatest}) {
		t.Errorf("References = %q: put must take the ref argument, not img.References", img.References)
	}
}

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"busybox", busyboxLatest},
		{"busybox:1.0", busybox10},
		{"library/busybox:1.0", busybox10},
		{"docker.io/library/busybox:1.0", busybox10},
		{"index.docker.io/library/busybox", "docker.io/library/busybox:latest"},
		{"registry.k8s.io/pause", "registry.k8s.io/pause:latest"},
		{"localhost:5000/a/b", "localhost:5000/a/b:latest"},
		{"busybox@sha256:" + strings.Repeat("0123456789abcdef", 4), busyboxDigest},
		// A tag and a digest: the digest wins, as in the CRI.
		{"busybox:1.0@sha256:" + strings.Repeat("0123456789abcdef", 4), busyboxDigest},
	}
	for _, tc := range cases {
		got, err := normalize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "Busybox", "busybox:", "a@sha256:123", strings.Repeat("a", 64)} {
		if got, err := normalize(bad); err == nil {
			t.Errorf("normalize(%q) = %q, want an error", bad, got)
		}
	}
}
