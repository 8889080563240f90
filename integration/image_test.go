//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The images below are served by the lab registry on 127.0.0.1:5000, which
// the hosts.toml files in registryConfig mirror each registry to.
const (
	registryConfig = "/etc/peapod/certs.d"
	labRegistry    = "http://127.0.0.1:5000"

	busyboxRef  = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	tagsRepo    = "gcr.io/k8s-staging-cri-tools/test-image-tags"
	pause39     = "registry.k8s.io/pause:3.9"
	pause39Old  = "k8s.gcr.io/pause:3.9"
	pause310    = "registry.k8s.io/pause:3.10"
	userUIDRef  = "gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest"
	userNameRef = "gcr.io/k8s-staging-cri-tools/test-image-user-username:latest"
	missingTag  = "registry.k8s.io/e2e-test-images/busybox:no-such-tag"
	missingRepo = "gcr.io/k8s-staging-cri-tools/no-such-image:1"

	pullTimeout = time.Minute
)

var imageIDPattern = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// imageNamespace returns a containerd namespace for this test alone. When the
// test ends, a fresh peapod removes every image in it through the CRI (which
// checks that RemoveImage leaves nothing behind) and the namespace is deleted.
func imageNamespace(t *testing.T) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	name = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(name, "-")
	ns := fmt.Sprintf("peapod-it-%.30s-%s", strings.Trim(name, "-"), hex.EncodeToString(b[:]))
	// Registered first, so it runs after every daemon the test started has
	// been stopped.
	t.Cleanup(func() { cleanNamespace(t, ns) })
	return ns
}

func cleanNamespace(t *testing.T, ns string) {
	_, ic := startImages(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	defer cancel()
	list, err := ic.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Errorf("cleaning namespace %s: %v", ns, err)
		return
	}
	for _, img := range list.Images {
		if _, err := ic.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: img.Id}}); err != nil {
			t.Errorf("cleaning namespace %s: removing %s: %v", ns, img.Id, err)
		}
	}
	if n := containerdImages(t, ns); len(n) != 0 {
		t.Errorf("containerd namespace %s still has image records %q after RemoveImage of every image", ns, n)
	}
	// The fresh peapod ended the leases a killed one left (its operations'
	// and its pulls'): a synchronous collection then takes every blob and
	// snapshot nothing refers to, and the namespace must be empty.
	c := containerdClient(t)
	collectGarbage(t, c, ns)
	if err := c.NamespaceService().Delete(ctx, ns); err != nil && !errdefs.IsNotFound(err) {
		t.Errorf("namespace %s left behind: %v", ns, err)
	}
}

// collectGarbage runs containerd's garbage collector and waits for it to
// finish: deleting a lease synchronously does.
func collectGarbage(t *testing.T, c *client.Client, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 10*time.Second)
	defer cancel()
	ls := c.LeasesService()
	l, err := ls.Create(ctx, leases.WithRandomID())
	if err != nil {
		t.Fatalf("creating a lease in %s to collect garbage: %v", ns, err)
	}
	if err := ls.Delete(ctx, l, leases.SynchronousDelete); err != nil {
		t.Fatalf("collecting garbage in %s: %v", ns, err)
	}
}

var (
	ctrdOnce   sync.Once
	ctrdClient *client.Client
	ctrdErr    error
)

// containerdClient is a client of the containerd under test, to look behind
// peapod's back.
func containerdClient(t *testing.T) *client.Client {
	t.Helper()
	ctrdOnce.Do(func() { ctrdClient, ctrdErr = client.New(containerdSock) })
	if ctrdErr != nil {
		t.Fatalf("containerd client for %s: %v", containerdSock, ctrdErr)
	}
	return ctrdClient
}

// containerdImages lists the names of containerd's image records in ns.
func containerdImages(t *testing.T, ns string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 10*time.Second)
	defer cancel()
	recs, err := containerdClient(t).ImageService().List(ctx)
	if err != nil {
		t.Fatalf("listing containerd images in %s: %v", ns, err)
	}
	var names []string
	for _, r := range recs {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return names
}

// startImages starts a peapod on containerd namespace ns, with the lab's
// registry mirrors and pause-image 3.10, and returns an image client.
func startImages(t *testing.T, ns string) (*daemon, runtime.ImageServiceClient) {
	t.Helper()
	return startImagesWith(t, ns, registryConfig)
}

// startImagesWith is startImages with the registry mirrors of hostsDir and
// more arguments.
func startImagesWith(t *testing.T, ns, hostsDir string, args ...string) (*daemon, runtime.ImageServiceClient) {
	t.Helper()
	d := start(t, options{extraArgs: append([]string{
		"--containerd-namespace", ns,
		"--registry-config-path", hostsDir,
		"--pause-image", pause310,
	}, args...)})
	d.waitServing()
	return d, runtime.NewImageServiceClient(d.dial())
}

func pullCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	t.Cleanup(cancel)
	return ctx
}

func pull(t *testing.T, ic runtime.ImageServiceClient, ref string) string {
	t.Helper()
	start := time.Now()
	resp, err := ic.PullImage(pullCtx(t), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("PullImage(%s): %v", ref, err)
	}
	if !imageIDPattern.MatchString(resp.ImageRef) {
		t.Fatalf("PullImage(%s) = %q, want an image ID sha256:<64 hex>", ref, resp.ImageRef)
	}
	t.Logf("pulled %s as %s in %s", ref, resp.ImageRef, time.Since(start))
	return resp.ImageRef
}

// imageStatus returns the image name names, or nil when there is none.
func imageStatus(t *testing.T, ic runtime.ImageServiceClient, name string) *runtime.Image {
	t.Helper()
	resp, err := ic.ImageStatus(callCtx(t), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: name}})
	if err != nil {
		t.Fatalf("ImageStatus(%s): %v", name, err)
	}
	return resp.Image
}

func listImages(t *testing.T, ic runtime.ImageServiceClient) []*runtime.Image {
	t.Helper()
	resp, err := ic.ListImages(callCtx(t), &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	return resp.Images
}

// registryDigest asks the lab registry which manifest digest ref has.
func registryDigest(t *testing.T, ref string) string {
	t.Helper()
	repo, tag, _ := strings.Cut(ref, ":")
	req, err := http.NewRequest(http.MethodHead, labRegistry+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", strings.Join([]string{
		"application/vnd.oci.image.index.v1+json",
		"application/vnd.docker.distribution.manifest.list.v2+json",
		"application/vnd.oci.image.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.v2+json",
	}, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("asking the lab registry about %s: %v", ref, err)
	}
	resp.Body.Close()
	d := resp.Header.Get("Docker-Content-Digest")
	if resp.StatusCode != http.StatusOK || d == "" {
		t.Fatalf("lab registry: HEAD %s: %s, digest %q", ref, resp.Status, d)
	}
	return d
}

func TestImagePullStatusList(t *testing.T) {
	t.Parallel()
	ns := imageNamespace(t)
	_, ic := startImages(t, ns)

	if img := imageStatus(t, ic, busyboxRef); img != nil {
		t.Fatalf("ImageStatus before the pull = %v, want none", img)
	}
	id := pull(t, ic, busyboxRef)

	digestRef := strings.Split(busyboxRef, ":")[0] + "@" + registryDigest(t, busyboxRef)
	st := imageStatus(t, ic, busyboxRef)
	if st == nil {
		t.Fatalf("ImageStatus(%s) after the pull: no image", busyboxRef)
	}
	if st.Id != id {
		t.Errorf("ImageStatus.Id = %s, PullImage said %s", st.Id, id)
	}
	if !slices.Equal(st.RepoTags, []string{busyboxRef}) {
		t.Errorf("RepoTags = %q, want [%s]", st.RepoTags, busyboxRef)
	}
	if !slices.Equal(st.RepoDigests, []string{digestRef}) {
		t.Errorf("RepoDigests = %q, want [%s]", st.RepoDigests, digestRef)
	}
	if st.Size == 0 || st.Pinned {
		t.Errorf("Size %d, Pinned %v", st.Size, st.Pinned)
	}

	list := listImages(t, ic)
	if len(list) != 1 || !proto.Equal(list[0], st) {
		t.Errorf("ListImages = %v, want just %v", list, st)
	}

	// Every name of the image answers the same.
	hexID := strings.TrimPrefix(id, "sha256:")
	for _, name := range []string{id, hexID, hexID[:12], "sha256:" + hexID[:12], busyboxRef, digestRef} {
		if got := imageStatus(t, ic, name); !proto.Equal(got, st) {
			t.Errorf("ImageStatus(%s) = %v, want %v", name, got, st)
		}
		resp, err := ic.ListImages(callCtx(t), &runtime.ListImagesRequest{Filter: &runtime.ImageFilter{Image: &runtime.ImageSpec{Image: name}}})
		if err != nil || len(resp.Images) != 1 || resp.Images[0].Id != id {
			t.Errorf("ListImages(filter %s) = %v, %v; want %s", name, resp.GetImages(), err, id)
		}
	}
	for _, name := range []string{"registry.k8s.io/e2e-test-images/busybox:other", "registry.k8s.io/e2e-test-images/busybox", "sha256:" + strings.Repeat("0", 64)} {
		if got := imageStatus(t, ic, name); got != nil {
			t.Errorf("ImageStatus(%s) = %v, want none", name, got)
		}
	}

	fs, err := ic.ImageFsInfo(callCtx(t), &runtime.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.ImageFilesystems) != 1 {
		t.Fatalf("ImageFsInfo = %v, want one filesystem", fs)
	}
	u := fs.ImageFilesystems[0]
	if fi, err := os.Stat(u.GetFsId().GetMountpoint()); err != nil || !fi.IsDir() {
		t.Errorf("ImageFsInfo mountpoint %q: %v", u.GetFsId().GetMountpoint(), err)
	}
	if u.GetUsedBytes().GetValue() == 0 || u.GetInodesUsed().GetValue() == 0 {
		t.Errorf("ImageFsInfo after a pull: %d bytes, %d inodes used", u.GetUsedBytes().GetValue(), u.GetInodesUsed().GetValue())
	}
	if age := time.Since(time.Unix(0, u.Timestamp)); age < 0 || age > time.Minute {
		t.Errorf("ImageFsInfo timestamp %s old", age)
	}

	// RemoveImage by digest removes the tag too; removing again succeeds.
	for range 2 {
		if _, err := ic.RemoveImage(callCtx(t), &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: digestRef}}); err != nil {
			t.Fatalf("RemoveImage(%s): %v", digestRef, err)
		}
	}
	if got := imageStatus(t, ic, busyboxRef); got != nil {
		t.Errorf("ImageStatus(%s) after RemoveImage = %v", busyboxRef, got)
	}
	if recs := containerdImages(t, ns); len(recs) != 0 {
		t.Errorf("containerd image records after RemoveImage: %q", recs)
	}
}

// A pull by digest names the image by digest only, as critest's "public
// image with digest" expects; a later pull by tag adds the tag.
func TestImagePullByDigest(t *testing.T) {
	t.Parallel()
	ns := imageNamespace(t)
	_, ic := startImages(t, ns)

	digestRef := tagsRepo + "@" + registryDigest(t, tagsRepo+":1")
	id := pull(t, ic, digestRef)
	img := imageStatus(t, ic, digestRef)
	if img == nil || img.Id != id || len(img.RepoTags) != 0 || !slices.Equal(img.RepoDigests, []string{digestRef}) {
		t.Errorf("ImageStatus(%s) = %v, want ID %s, no RepoTags, RepoDigests [%s]", digestRef, img, id, digestRef)
	}
	if got := imageStatus(t, ic, tagsRepo+":1"); got != nil {
		t.Errorf("ImageStatus(%s:1) after a pull by digest = %v, want none", tagsRepo, got)
	}
	// A reference with both a tag and a digest is the digest.
	if got := pull(t, ic, tagsRepo+":2@"+strings.Split(digestRef, "@")[1]); got != id {
		t.Errorf("pull by tag and digest = %s, want %s", got, id)
	}
	if got := pull(t, ic, tagsRepo+":1"); got != id {
		t.Errorf("pull by tag = %s, want %s", got, id)
	}
	img = imageStatus(t, ic, id)
	if img == nil || !slices.Equal(img.RepoTags, []string{tagsRepo + ":1"}) || !slices.Equal(img.RepoDigests, []string{digestRef}) {
		t.Errorf("ImageStatus(%s) = %v, want RepoTags [%s:1], RepoDigests [%s]", id, img, tagsRepo, digestRef)
	}
	if recs := containerdImages(t, ns); !slices.Equal(recs, []string{tagsRepo + ":1", digestRef}) {
		t.Errorf("containerd image records = %q, want the tag and the digest", recs)
	}
}

func TestImageThreeTags(t *testing.T) {
	t.Parallel()
	ns := imageNamespace(t)
	_, ic := startImages(t, ns)

	var tags []string
	var id string
	for _, tag := range []string{"1", "2", "3"} {
		ref := tagsRepo + ":" + tag
		tags = append(tags, ref)
		got := pull(t, ic, ref)
		if id != "" && got != id {
			t.Errorf("PullImage(%s) = %s, want %s as for the other tags", ref, got, id)
		}
		id = got
	}
	list := listImages(t, ic)
	if len(list) != 1 {
		t.Fatalf("ListImages = %v, want one image", list)
	}
	digestRef := tagsRepo + "@" + registryDigest(t, tagsRepo+":1")
	if img := list[0]; img.Id != id || !slices.Equal(img.RepoTags, tags) || !slices.Equal(img.RepoDigests, []string{digestRef}) {
		t.Errorf("ListImages = %v, want ID %s, RepoTags %q, RepoDigests [%s]", img, id, tags, digestRef)
	}

	if _, err := ic.RemoveImage(callCtx(t), &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: tags[1]}}); err != nil {
		t.Fatalf("RemoveImage(%s): %v", tags[1], err)
	}
	if list := listImages(t, ic); len(list) != 0 {
		t.Errorf("ListImages after removing one tag = %v, want none", list)
	}
	for _, name := range append(tags, id, digestRef) {
		if got := imageStatus(t, ic, name); got != nil {
			t.Errorf("ImageStatus(%s) after RemoveImage = %v", name, got)
		}
	}
	if recs := containerdImages(t, ns); len(recs) != 0 {
		t.Errorf("containerd image records after RemoveImage: %q", recs)
	}

	// The image can be pulled again.
	if got := pull(t, ic, tags[2]); got != id {
		t.Errorf("pulling %s again = %s, want %s", tags[2], got, id)
	}
	if img := imageStatus(t, ic, id); img == nil || !slices.Equal(img.RepoTags, tags[2:]) {
		t.Errorf("ImageStatus after pulling again = %v, want RepoTags [%s]", img, tags[2])
	}
}

func TestImageSameFromTwoRegistries(t *testing.T) {
	t.Parallel()
	ns := imageNamespace(t)
	_, ic := startImages(t, ns)

	id := pull(t, ic, pause39)
	if other := pull(t, ic, pause39Old); other != id {
		t.Errorf("%s is %s, %s is %s: want one ID for one image", pause39, id, pause39Old, other)
	}
	list := listImages(t, ic)
	if len(list) != 1 {
		t.Fatalf("ListImages = %v, want one image", list)
	}
	d := registryDigest(t, pause39)
	wantTags := []string{pause39Old, pause39}
	wantDigests := []string{"k8s.gcr.io/pause@" + d, "registry.k8s.io/pause@" + d}
	if img := list[0]; !slices.Equal(img.RepoTags, wantTags) || !slices.Equal(img.RepoDigests, wantDigests) {
		t.Errorf("image = %v, want RepoTags %q, RepoDigests %q", img, wantTags, wantDigests)
	}

	// Only the configured pause image is pinned.
	if list[0].Pinned {
		t.Errorf("%s pinned, but the pause image is %s", pause39, pause310)
	}
	pinnedID := pull(t, ic, pause310)
	busyboxID := pull(t, ic, busyboxRef)
	for _, img := range listImages(t, ic) {
		if want := img.Id == pinnedID; img.Pinned != want {
			t.Errorf("%s (%q) pinned = %v, want %v", img.Id, img.RepoTags, img.Pinned, want)
		}
	}

	// A short name is docker.io's; this busybox is the same image as the
	// e2e one (conformance/images/build.sh pushes one image under both).
	if got := pull(t, ic, "busybox"); got != busyboxID {
		t.Errorf("docker.io busybox is %s, e2e busybox %s: want one image, as the lab's registry has", got, busyboxID)
	} else if img := imageStatus(t, ic, "busybox"); img == nil || !slices.Equal(img.RepoTags, []string{"docker.io/library/busybox:latest", busyboxRef}) {
		t.Errorf("ImageStatus(busybox) = %v, want both tags", img)
	}
	if img := imageStatus(t, ic, "docker.io/library/busybox:latest"); img == nil {
		t.Error("ImageStatus(docker.io/library/busybox:latest) after pulling busybox: none")
	}
}

func TestImageUser(t *testing.T) {
	t.Parallel()
	ns := imageNamespace(t)
	_, ic := startImages(t, ns)

	pull(t, ic, userUIDRef)
	img := imageStatus(t, ic, userUIDRef)
	if img.GetUid().GetValue() != 1002 || img.GetUid() == nil || img.Username != "" {
		t.Errorf("%s: Uid %v, Username %q; want 1002 and no name", userUIDRef, img.GetUid(), img.Username)
	}
	pull(t, ic, userNameRef)
	img = imageStatus(t, ic, userNameRef)
	if img.GetUid() != nil || img.Username != "www-data" {
		t.Errorf("%s: Uid %v, Username %q; want no uid and www-data", userNameRef, img.GetUid(), img.Username)
	}
	pull(t, ic, busyboxRef)
	img = imageStatus(t, ic, busyboxRef)
	if img.GetUid() != nil || img.Username != "" {
		t.Errorf("%s (no USER): Uid %v, Username %q; want neither", busyboxRef, img.GetUid(), img.Username)
	}
}

func TestImageIndexSurvivesRestart(t *testing.T) {
	t.Parallel()
	ns := imageNamespace(t)
	first, ic := startImages(t, ns)

	pull(t, ic, busyboxRef)
	pull(t, ic, tagsRepo+":1")
	pull(t, ic, tagsRepo+":3")
	pull(t, ic, pause310)
	before := listImages(t, ic)
	if len(before) != 3 {
		t.Fatalf("ListImages = %v, want 3 images", before)
	}
	first.signal(syscall.SIGKILL)
	first.wait(5 * time.Second)

	_, ic = startImages(t, ns)
	after := listImages(t, ic)
	if len(after) != len(before) {
		t.Fatalf("after a restart ListImages has %d images, before %d:\n%v\n%v", len(after), len(before), after, before)
	}
	for i := range before {
		if !proto.Equal(before[i], after[i]) {
			t.Errorf("after a restart ListImages[%d] = %v, before %v", i, after[i], before[i])
		}
	}
	for _, img := range before {
		names := append([]string{img.Id, strings.TrimPrefix(img.Id, "sha256:")[:12]}, img.RepoTags...)
		names = append(names, img.RepoDigests...)
		for _, name := range names {
			if got := imageStatus(t, ic, name); !proto.Equal(got, img) {
				t.Errorf("after a restart ImageStatus(%s) = %v, want %v", name, got, img)
			}
		}
	}
}

func TestImageConcurrentPulls(t *testing.T) {
	t.Parallel()
	ns := imageNamespace(t)
	_, ic := startImages(t, ns)

	const n = 10
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	ctx := pullCtx(t)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := ic.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busyboxRef}})
			ids[i], errs[i] = resp.GetImageRef(), err
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("pull %d: %v", i, errs[i])
		} else if ids[i] != ids[0] || !imageIDPattern.MatchString(ids[i]) {
			t.Errorf("pull %d = %q, pull 0 = %q", i, ids[i], ids[0])
		}
	}
	if list := listImages(t, ic); len(list) != 1 || list[0].Id != ids[0] || len(list[0].RepoTags) != 1 {
		t.Errorf("ListImages after concurrent pulls = %v", list)
	}
}

func TestImagePullDeadline(t *testing.T) {
	t.Parallel()
	ns := imageNamespace(t)
	_, ic := startImages(t, ns)

	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	resp, err := ic.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busyboxRef}})
	if status.Code(err) != codes.DeadlineExceeded || resp.GetImageRef() != "" {
		t.Errorf("PullImage with a 1 ms deadline = %v, %v; want DeadlineExceeded", resp, err)
	}
	// A retry finds the image, or joins the pull that goes on without the
	// caller; then the pull has finished before the namespace is cleaned.
	pull(t, ic, busyboxRef)
}

func TestImagePullErrors(t *testing.T) {
	t.Parallel()
	ns := imageNamespace(t)
	_, ic := startImages(t, ns)

	cases := []struct {
		ref  string
		code codes.Code
	}{
		{missingTag, codes.NotFound},
		{missingRepo, codes.NotFound},
		{"registry.k8s.io/e2e-test-images/BusyBox:1", codes.InvalidArgument},
		{"busybox:bad tag", codes.InvalidArgument},
	}
	for _, tc := range cases {
		start := time.Now()
		_, err := ic.PullImage(pullCtx(t), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: tc.ref}})
		took := time.Since(start)
		code := status.Code(err)
		t.Logf("PullImage(%s) after %s: %s: %v", tc.ref, took, code, err)
		switch {
		case code == codes.OK || code == codes.Unknown:
			t.Errorf("PullImage(%s) = %v (%s), want a classified error", tc.ref, err, code)
		case code != tc.code:
			t.Errorf("PullImage(%s) = %s, want %s: %v", tc.ref, code, tc.code, err)
		}
		if took > 10*time.Second {
			t.Errorf("PullImage(%s) took %s to fail", tc.ref, took)
		}
		if !strings.Contains(status.Convert(err).Message(), tc.ref) {
			t.Errorf("error %q does not name %s", status.Convert(err).Message(), tc.ref)
		}
	}
	if list := listImages(t, ic); len(list) != 0 {
		t.Errorf("ListImages after failed pulls = %v", list)
	}
	if recs := containerdImages(t, ns); len(recs) != 0 {
		t.Errorf("containerd image records after failed pulls: %q", recs)
	}
}
