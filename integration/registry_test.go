//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testRegistryHost is the host of the test registry's images. It does not
// resolve: only a hosts.toml mirror leads to the registry.
const testRegistryHost = "registry.peapod.test"

// testRegistry is a registry in the test process, on 127.0.0.1, serving one
// image made for the test (a random layer, so containerd holds none of its
// blobs) as testRegistryHost/app:<any tag but "missing">.
type testRegistry struct {
	url      string
	host     string // host:port of url
	hostsDir string // a hosts.toml directory mirroring testRegistryHost to url

	manifest, config, layer blob
	diffID                  digest.Digest

	auth       *registryAuth // what the registry asks for, if anything
	layerPace  time.Duration // when set, the layer comes in 64 pieces this far apart
	stallLayer bool          // half the layer, then nothing

	manifests    atomic.Int64 // manifest requests answered
	layers       atomic.Int64 // layer downloads begun
	layersActive atomic.Int64 // layer downloads not yet ended
}

type blob struct {
	data []byte
	desc ocispec.Descriptor
}

func newBlob(mediaType string, data []byte) blob {
	return blob{data: data, desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}}
}

// registryAuth is the bearer token scheme: a token endpoint exchanges a
// username and password, or an identity (refresh) token, for the token the
// registry takes; a client may also send the token itself.
type registryAuth struct {
	user, password, identityToken, token string
}

// newTestRegistry starts a registry; set its fields before the first pull.
func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	r.makeImage(t)
	quit := make(chan struct{})
	srv := httptest.NewServer(r.handler(quit))
	t.Cleanup(func() { close(quit); srv.Close() })
	r.url = srv.URL
	r.host = strings.TrimPrefix(srv.URL, "http://")

	r.hostsDir = tempDir(t)
	dir := filepath.Join(r.hostsDir, testRegistryHost)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", r.url, r.url)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *testRegistry) makeImage(t *testing.T) {
	t.Helper()
	// 4 MiB: containerd's transfer service sees a download grow a
	// megabyte at a time.
	data := make([]byte, 4<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	if err := tw.WriteHeader(&tar.Header{Name: "data", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	r.diffID = digest.FromBytes(tarball.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(tarball.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	r.layer = newBlob(ocispec.MediaTypeImageLayerGzip, gz.Bytes())

	config, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		Config:   ocispec.ImageConfig{Cmd: []string{"/data"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{r.diffID}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.config = newBlob(ocispec.MediaTypeImageConfig, config)
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    r.config.desc,
		Layers:    []ocispec.Descriptor{r.layer.desc},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.manifest = newBlob(ocispec.MediaTypeImageManifest, manifest)
}

func (r *testRegistry) handler(quit <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/token", r.serveToken)
	mux.HandleFunc("/v2/app/manifests/{ref}", func(w http.ResponseWriter, req *http.Request) {
		if !r.authorized(w, req) {
			return
		}
		if ref := req.PathValue("ref"); ref == "missing" || strings.HasPrefix(ref, "sha256:") && ref != r.manifest.desc.Digest.String() {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		r.manifests.Add(1)
		r.serveBlob(w, req, r.manifest)
	})
	mux.HandleFunc("/v2/app/blobs/{digest}", func(w http.ResponseWriter, req *http.Request) {
		if !r.authorized(w, req) {
			return
		}
		switch req.PathValue("digest") {
		case r.config.desc.Digest.String():
			r.serveBlob(w, req, r.config)
		case r.layer.desc.Digest.String():
			r.layers.Add(1)
			r.layersActive.Add(1)
			defer r.layersActive.Add(-1)
			r.serveLayer(w, req, quit)
		default:
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
		}
	})
	return mux
}

func (r *testRegistry) authorized(w http.ResponseWriter, req *http.Request) bool {
	if r.auth == nil || req.Header.Get("Authorization") == "Bearer "+r.auth.token {
		return true
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="peapod-test",scope="repository:app:pull"`, r.url))
	http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
	return false
}

// serveToken hands out the token for a username and password (an OAuth
// password grant, or basic auth) or for the identity token (a refresh grant).
func (r *testRegistry) serveToken(w http.ResponseWriter, req *http.Request) {
	ok := false
	if a := r.auth; a != nil {
		if user, pass, basic := req.BasicAuth(); basic {
			ok = user == a.user && pass == a.password
		} else if req.Method == http.MethodPost && req.ParseForm() == nil {
			switch req.PostForm.Get("grant_type") {
			case "password":
				ok = req.PostForm.Get("username") == a.user && req.PostForm.Get("password") == a.password
			case "refresh_token":
				ok = req.PostForm.Get("refresh_token") == a.identityToken
			}
		}
	}
	if !ok {
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": r.auth.token, "access_token": r.auth.token, "expires_in": 300})
}

func (r *testRegistry) serveBlob(w http.ResponseWriter, req *http.Request, b blob) {
	w.Header().Set("Content-Type", b.desc.MediaType)
	w.Header().Set("Docker-Content-Digest", b.desc.Digest.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(b.data)))
	if req.Method != http.MethodHead {
		_, _ = w.Write(b.data)
	}
}

func (r *testRegistry) serveLayer(w http.ResponseWriter, req *http.Request, quit <-chan struct{}) {
	if req.Method == http.MethodHead || r.layerPace == 0 && !r.stallLayer {
		r.serveBlob(w, req, r.layer)
		return
	}
	w.Header().Set("Content-Type", r.layer.desc.MediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(r.layer.data)))
	wait := func(d time.Duration) bool {
		select {
		case <-req.Context().Done():
			return false
		case <-quit:
			return false
		case <-time.After(d):
			return true
		}
	}
	if r.stallLayer {
		_, _ = w.Write(r.layer.data[:len(r.layer.data)/2])
		w.(http.Flusher).Flush()
		wait(time.Hour)
		return
	}
	const pieces = 64
	size := (len(r.layer.data) + pieces - 1) / pieces
	for data := r.layer.data; len(data) > 0; data = data[min(size, len(data)):] {
		if _, err := w.Write(data[:min(size, len(data))]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		if !wait(r.layerPace) {
			return
		}
	}
}

// ref is a reference to the registry's image under tag.
func (r *testRegistry) ref(tag string) string { return testRegistryHost + "/app:" + tag }

// wantPullVia is how peapod must pull from the containerd under test: through
// its transfer service from 2.0 on, else through the client.
func wantPullVia(t *testing.T) string {
	t.Helper()
	v, err := containerdClient(t).Version(callCtx(t))
	if err != nil {
		t.Fatalf("containerd version: %v", err)
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(v.Version, "v"), ".")
	if n, err := strconv.Atoi(major); err == nil && n >= 2 {
		return "transfer service"
	}
	return "client"
}

// checkPulledVia fails the test unless d logged pulling ref the way
// wantPullVia says.
func checkPulledVia(t *testing.T, d *daemon, ref string) {
	t.Helper()
	want := fmt.Sprintf(`"Pulled image" ref=%q`, ref)
	via := wantPullVia(t)
	for _, line := range strings.Split(d.stderr.String(), "\n") {
		if strings.Contains(line, want) {
			if !strings.Contains(line, fmt.Sprintf("via=%q", via)) {
				t.Errorf("peapod pulled %s not via the %s: %s", ref, via, line)
			}
			return
		}
	}
	t.Errorf("peapod logged no pull of %s", ref)
}

func pullWithAuth(ctx context.Context, ic runtime.ImageServiceClient, ref string, auth *runtime.AuthConfig) (string, error) {
	resp, err := ic.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}, Auth: auth})
	return resp.GetImageRef(), err
}

// A pull goes only where the hosts.toml directory says, by the transfer
// service where containerd has it, and leaves the image's blobs and its
// unpacked layer held by the image records alone.
func TestImagePullThroughMirror(t *testing.T) {
	t.Parallel()
	reg := newTestRegistry(t)
	ns := imageNamespace(t)
	d, ic := startImagesWith(t, ns, reg.hostsDir)

	ref := reg.ref("1")
	id := pull(t, ic, ref)
	checkPulledVia(t, d, ref)
	if id != reg.config.desc.Digest.String() {
		t.Errorf("PullImage(%s) = %s, want the config digest %s", ref, id, reg.config.desc.Digest)
	}
	if reg.manifests.Load() == 0 || reg.layers.Load() != 1 {
		t.Errorf("the mirror answered %d manifest requests and %d layer downloads, want some and 1", reg.manifests.Load(), reg.layers.Load())
	}
	digestRef := testRegistryHost + "/app@" + reg.manifest.desc.Digest.String()
	img := imageStatus(t, ic, ref)
	if img == nil || img.Id != id || len(img.RepoTags) != 1 || img.RepoTags[0] != ref ||
		len(img.RepoDigests) != 1 || img.RepoDigests[0] != digestRef || img.Size == 0 {
		t.Errorf("ImageStatus(%s) = %v, want ID %s, RepoTags [%s], RepoDigests [%s], a size", ref, img, id, ref, digestRef)
	}

	// peapod's lease ends (just after the pull answers), and containerd
	// took none of its own: what the image needs survives a garbage
	// collection on its records alone.
	ctx := namespaces.WithNamespace(callCtx(t), ns)
	c := containerdClient(t)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ls, err := c.LeasesService().List(ctx)
		if err == nil && len(ls) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leases after the pull: %v, %v; want none", ls, err)
		}
	}
	gcTrigger := images.Image{Name: "gc-trigger.peapod.test/x:1", Target: reg.manifest.desc}
	if _, err := c.ImageService().Create(ctx, gcTrigger); err != nil {
		t.Fatal(err)
	}
	if err := c.ImageService().Delete(ctx, gcTrigger.Name, images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	for _, b := range []blob{reg.manifest, reg.config, reg.layer} {
		if _, err := c.ContentStore().Info(ctx, b.desc.Digest); err != nil {
			t.Errorf("%s blob after a garbage collection: %v", b.desc.MediaType, err)
		}
	}
	// One layer: its chain ID is its diff ID.
	if _, err := c.SnapshotService("overlayfs").Stat(ctx, reg.diffID.String()); err != nil {
		t.Errorf("the image's overlayfs snapshot after a garbage collection: %v", err)
	}

	// Tags the registry does not have, and hosts nothing mirrors, are not
	// found; neither reaches any other registry.
	for _, missing := range []string{reg.ref("missing"), testRegistryHost + "/app@sha256:" + strings.Repeat("0", 64)} {
		if _, err := pullWithAuth(pullCtx(t), ic, missing, nil); status.Code(err) != codes.NotFound {
			t.Errorf("PullImage(%s) = %v, want NotFound", missing, err)
		}
	}
}

// Every kind of CRI credential reaches the registry, and only the registry
// it is for.
func TestImagePullCredentials(t *testing.T) {
	t.Parallel()
	reg := newTestRegistry(t)
	reg.auth = &registryAuth{user: "peapod", password: "s3cret", identityToken: "refresh-me", token: "the-token"}
	ns := imageNamespace(t)
	d, ic := startImagesWith(t, ns, reg.hostsDir)

	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name string
		auth *runtime.AuthConfig
		code codes.Code // OK: pulled
	}{
		{"none", nil, codes.Unknown},
		{"wrong password", &runtime.AuthConfig{Username: "peapod", Password: "wrong"}, codes.Unknown},
		{"username and password", &runtime.AuthConfig{Username: "peapod", Password: "s3cret"}, codes.OK},
		{"auth", &runtime.AuthConfig{Auth: b64("peapod:s3cret")}, codes.OK},
		{"identity token", &runtime.AuthConfig{IdentityToken: "refresh-me"}, codes.OK},
		{"registry token", &runtime.AuthConfig{RegistryToken: "the-token"}, codes.OK},
		{"server address of the mirror", &runtime.AuthConfig{Username: "peapod", Password: "s3cret", ServerAddress: "http://" + reg.host}, codes.OK},
		{"server address of another registry", &runtime.AuthConfig{Username: "peapod", Password: "s3cret", ServerAddress: "other.peapod.test"}, codes.Unknown},
		{"auth not base64", &runtime.AuthConfig{Auth: "not base64!"}, codes.InvalidArgument},
	}
	ref := reg.ref("1")
	for _, tc := range cases {
		id, err := pullWithAuth(pullCtx(t), ic, ref, tc.auth)
		t.Logf("%s: PullImage = %q, %v", tc.name, id, err)
		if code := status.Code(err); code != tc.code {
			t.Errorf("%s: PullImage(%s) = %v, want %s", tc.name, ref, err, tc.code)
			continue
		}
		if tc.code != codes.OK {
			if img := imageStatus(t, ic, ref); img != nil {
				t.Errorf("%s: PullImage failed, yet ImageStatus = %v", tc.name, img)
			}
			continue
		}
		if id != reg.config.desc.Digest.String() {
			t.Errorf("%s: PullImage = %s, want %s", tc.name, id, reg.config.desc.Digest)
		}
		// Removed, so that the next pull fetches everything again.
		if _, err := ic.RemoveImage(callCtx(t), &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: id}}); err != nil {
			t.Fatalf("RemoveImage(%s): %v", id, err)
		}
	}
	checkPulledVia(t, d, ref)
}

// A pull whose download stops fails after the progress timeout; one whose
// download is slower than the timeout but goes on succeeds.
func TestImagePullProgressTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	ns := imageNamespace(t)
	stalled := newTestRegistry(t)
	stalled.stallLayer = true
	d, ic := startImagesWith(t, ns, stalled.hostsDir, "--image-pull-progress-timeout", timeout.String())

	start := time.Now()
	_, err := pullWithAuth(pullCtx(t), ic, stalled.ref("1"), nil)
	took := time.Since(start)
	t.Logf("stalled pull after %s: %v", took, err)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("stalled PullImage = %v, want DeadlineExceeded", err)
	}
	// Well before three timeouts, which peapod allows containerd when no
	// download is in flight.
	if took < timeout || took > 5*timeout/2 {
		t.Errorf("stalled PullImage failed after %s, want soon after the %s progress timeout", took, timeout)
	}
	if stalled.layers.Load() == 0 {
		t.Error("the stalled registry served no layer: the pull stopped for another reason")
	}
	// containerd gave up the download too.
	for deadline := time.Now().Add(5 * time.Second); stalled.layersActive.Load() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Error("the stalled layer download still goes on after the pull failed")
			break
		}
	}

	slow := newTestRegistry(t)
	slow.layerPace = timeout / 40 // 64 pieces: 1.6 timeouts in all, a megabyte each 0.4
	d.signal(syscall.SIGTERM)
	d.wait(10 * time.Second)
	d, ic = startImagesWith(t, ns, slow.hostsDir, "--image-pull-progress-timeout", timeout.String())
	start = time.Now()
	id := pull(t, ic, slow.ref("1"))
	if took := time.Since(start); took < timeout {
		t.Errorf("slow PullImage took %s, want longer than the %s timeout (the test is wrong)", took, timeout)
	}
	if id != slow.config.desc.Digest.String() {
		t.Errorf("slow PullImage = %s, want %s", id, slow.config.desc.Digest)
	}
	checkPulledVia(t, d, slow.ref("1"))
}
