package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/image"
)

const (
	busyboxID  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	pauseID    = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	busyboxTag = "docker.io/library/busybox:1.36"
	busyboxDig = "docker.io/library/busybox@sha256:3333333333333333333333333333333333333333333333333333333333333333"
	pauseTag   = "registry.k8s.io/pause:3.10"
)

// fakeImages is an Images backend holding fixed images, whose errors the
// test chooses, and which records what it was asked.
type fakeImages struct {
	images []image.Image
	pinned string // the reference that is pinned

	pulled    string // the ID Pull answers
	pullErr   error
	removeErr error
	listErr   error
	fsErr     error

	mu      sync.Mutex
	auth    *image.Auth
	name    string // the last name given to Pull/Get/Remove
	removed []string
}

func (f *fakeImages) record(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.name = name
}

func (f *fakeImages) Pull(_ context.Context, name string, auth *image.Auth) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.name, f.auth = name, auth
	if f.pullErr != nil {
		return "", f.pullErr
	}
	return f.pulled, nil
}

func (f *fakeImages) Get(_ context.Context, name string) (image.Image, error) {
	f.record(name)
	for _, img := range f.images {
		if img.ID == name || slices.Contains(img.References, name) {
			return img, nil
		}
	}
	return image.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
}

func (f *fakeImages) List(context.Context) ([]image.Image, error) {
	if f.listErr != nil {
		return nil, f.listErr
	}
	return f.images, nil
}

func (f *fakeImages) Remove(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.name = name
	f.removed = append(f.removed, name)
	return f.removeErr
}

func (f *fakeImages) Pinned(img image.Image) bool {
	return slices.Contains(img.References, f.pinned)
}

func (f *fakeImages) FsUsage(context.Context) (image.FsUsage, error) {
	if f.fsErr != nil {
		return image.FsUsage{}, f.fsErr
	}
	return image.FsUsage{Timestamp: time.Unix(100, 5), Mountpoint: "/var/lib/containerd/snapshots", UsedBytes: 1234, InodesUsed: 56}, nil
}

func testImages() *fakeImages {
	return &fakeImages{
		images: []image.Image{
			{
				ID: busyboxID, References: []string{busyboxTag, busyboxDig}, Size: 4096,
				Config: ocispec.ImageConfig{User: "1002:1003"},
			},
			{
				ID: pauseID, References: []string{pauseTag}, Size: 512,
				Config: ocispec.ImageConfig{User: "nobody"},
			},
		},
		pinned: pauseTag,
		pulled: busyboxID,
	}
}

// imageClient serves a Service with the given Images backend over an
// in-process gRPC connection with peapod's interceptors.
func imageClient(t *testing.T, images Images) (runtime.ImageServiceClient, *recorder) {
	t.Helper()
	s := newTestService(nil, nil)
	s.images = images
	obs := &recorder{}
	return runtime.NewImageServiceClient(serveBufconn(t, obs, s.Register)), obs
}

func TestImageUser(t *testing.T) {
	cases := []struct {
		user     string
		uid      *int64
		username string
	}{
		{"", nil, ""},
		{"0", ptr(int64(0)), ""},
		{"1002", ptr(int64(1002)), ""},
		{"www-data", nil, "www-data"},
		{"1003:1004", ptr(int64(1003)), ""},
		{"www-data:1004", nil, "www-data"},
		{"www-data:staff", nil, "www-data"},
		{":1004", nil, ""},
		{"1003:", ptr(int64(1003)), ""},
	}
	for _, tc := range cases {
		uid, username := imageUser(tc.user)
		if (uid == nil) != (tc.uid == nil) || (uid != nil && *uid != *tc.uid) || username != tc.username {
			t.Errorf("imageUser(%q) = %v, %q; want %v, %q", tc.user, deref(uid), username, deref(tc.uid), tc.username)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestImageStatus(t *testing.T) {
	fake := testImages()
	ic, _ := imageClient(t, fake)
	ctx := callContext(t)

	resp, err := ic.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: busyboxTag}})
	if err != nil {
		t.Fatal(err)
	}
	want := &runtime.Image{
		Id:          busyboxID,
		RepoTags:    []string{busyboxTag},
		RepoDigests: []string{busyboxDig},
		Size:        4096,
		Uid:         &runtime.Int64Value{Value: 1002},
	}
	if !proto.Equal(resp.Image, want) {
		t.Errorf("ImageStatus(%s) = %v, want %v", busyboxTag, resp.Image, want)
	}
	if resp.Info != nil {
		t.Errorf("non-verbose ImageStatus has Info %v", resp.Info)
	}

	resp, err = ic.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: pauseID}, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	want = &runtime.Image{Id: pauseID, RepoTags: []string{pauseTag}, Size: 512, Username: "nobody", Pinned: true}
	if !proto.Equal(resp.Image, want) {
		t.Errorf("ImageStatus(%s) = %v, want %v", pauseID, resp.Image, want)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info["id"] != pauseID {
		t.Errorf(`verbose Info["info"] = %q (%v), want JSON with the id`, resp.Info["info"], err)
	}
}

func TestImageStatusUnknown(t *testing.T) {
	fake := testImages()
	ic, obs := imageClient(t, fake)
	resp, err := ic.ImageStatus(callContext(t), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: "example.com/nope:1"}})
	if err != nil {
		t.Fatalf("ImageStatus of an unknown image: %v, want no error", err)
	}
	if resp.Image != nil || resp.Info != nil {
		t.Errorf("ImageStatus of an unknown image = %v, want empty", resp)
	}
	if got := obs.last(); got != (call{"ImageStatus", codes.OK}) {
		t.Errorf("observed %+v", got)
	}
	if fake.name != "example.com/nope:1" {
		t.Errorf("backend asked for %q", fake.name)
	}
}

// Errors other than not-found are errors.
func TestImageStatusBackendError(t *testing.T) {
	ic, _ := imageClient(t, failingGet{testImages()})
	_, err := ic.ImageStatus(callContext(t), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: busyboxTag}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("ImageStatus with containerd down = %v, want Unavailable", err)
	}
}

type failingGet struct{ *fakeImages }

func (failingGet) Get(context.Context, string) (image.Image, error) {
	return image.Image{}, fmt.Errorf("listing images in containerd: %w", errdefs.ErrUnavailable)
}

func TestImageEmptyName(t *testing.T) {
	fake := testImages()
	ic, _ := imageClient(t, fake)
	ctx := callContext(t)
	calls := map[string]func(spec *runtime.ImageSpec) error{
		"PullImage": func(spec *runtime.ImageSpec) error {
			_, err := ic.PullImage(ctx, &runtime.PullImageRequest{Image: spec})
			return err
		},
		"ImageStatus": func(spec *runtime.ImageSpec) error {
			_, err := ic.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec})
			return err
		},
		"RemoveImage": func(spec *runtime.ImageSpec) error {
			_, err := ic.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec})
			return err
		},
	}
	for method, call := range calls {
		for _, spec := range []*runtime.ImageSpec{nil, {}, {Image: ""}} {
			err := call(spec)
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), method) {
				t.Errorf("%s(%v) = %v, want InvalidArgument naming %s", method, spec, err, method)
			}
		}
	}
	if fake.name != "" || len(fake.removed) != 0 {
		t.Errorf("backend called with %q (removed %q) for an empty name", fake.name, fake.removed)
	}
}

func TestListImages(t *testing.T) {
	fake := testImages()
	ic, _ := imageClient(t, fake)
	ctx := callContext(t)

	all, err := ic.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Images) != 2 || all.Images[0].Id != busyboxID || all.Images[1].Id != pauseID {
		t.Fatalf("ListImages = %v, want busybox and pause", all.Images)
	}
	if all.Images[0].Pinned || !all.Images[1].Pinned {
		t.Errorf("pinned = %v, %v; want only pause", all.Images[0].Pinned, all.Images[1].Pinned)
	}
	if all.Images[0].GetUid().GetValue() != 1002 || all.Images[1].Username != "nobody" {
		t.Errorf("users = %v / %q", all.Images[0].GetUid(), all.Images[1].Username)
	}

	// The same translation as ImageStatus.
	st, err := ic.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: busyboxID}})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(st.Image, all.Images[0]) {
		t.Errorf("ListImages says %v, ImageStatus %v", all.Images[0], st.Image)
	}

	cases := []struct {
		filter string
		want   []string
	}{
		{"", []string{busyboxID, pauseID}},
		{busyboxDig, []string{busyboxID}},
		{pauseTag, []string{pauseID}},
		{pauseID, []string{pauseID}},
		{"example.com/unknown:1", nil},
	}
	for _, tc := range cases {
		resp, err := ic.ListImages(ctx, &runtime.ListImagesRequest{Filter: &runtime.ImageFilter{Image: &runtime.ImageSpec{Image: tc.filter}}})
		if err != nil {
			t.Errorf("ListImages(filter %q): %v", tc.filter, err)
			continue
		}
		var got []string
		for _, img := range resp.Images {
			got = append(got, img.Id)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ListImages(filter %q) = %q, want %q", tc.filter, got, tc.want)
		}
	}

	fake.listErr = fmt.Errorf("listing images: %w", errdefs.ErrUnavailable)
	if _, err := ic.ListImages(ctx, &runtime.ListImagesRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("ListImages with a failing backend = %v, want Unavailable", err)
	}
}

func TestPullImage(t *testing.T) {
	fake := testImages()
	ic, _ := imageClient(t, fake)
	ctx := callContext(t)

	resp, err := ic.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "busybox:1.36"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ImageRef != busyboxID {
		t.Errorf("ImageRef = %q, want the image ID %q", resp.ImageRef, busyboxID)
	}
	if fake.name != "busybox:1.36" || fake.auth != nil {
		t.Errorf("backend pulled %q with auth %+v, want busybox:1.36 without auth", fake.name, fake.auth)
	}

	_, err = ic.PullImage(ctx, &runtime.PullImageRequest{
		Image: &runtime.ImageSpec{Image: "private.example.com/app:1"},
		Auth: &runtime.AuthConfig{
			Username: "u", Password: "p", Auth: "dTpw", ServerAddress: "private.example.com",
			IdentityToken: "id-token", RegistryToken: "reg-token",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := image.Auth{
		Username: "u", Password: "p", Auth: "dTpw", ServerAddress: "private.example.com",
		IdentityToken: "id-token", RegistryToken: "reg-token",
	}
	if fake.auth == nil || *fake.auth != want {
		t.Errorf("backend got auth %+v, want %+v", fake.auth, want)
	}

	// An empty AuthConfig is passed as given (no credentials).
	if _, err := ic.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "busybox"}, Auth: &runtime.AuthConfig{}}); err != nil {
		t.Fatal(err)
	}
	if fake.auth == nil || *fake.auth != (image.Auth{}) {
		t.Errorf("backend got auth %+v for an empty AuthConfig", fake.auth)
	}
}

// Pull errors reach the client with the code of what they wrap: the kubelet
// and critest tell a timeout from a missing image by it.
func TestPullImageErrorCodes(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code codes.Code
	}{
		{"deadline", fmt.Errorf("pulling docker.io/library/busybox:1.36: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"canceled", fmt.Errorf("pulling docker.io/library/busybox:1.36: %w", context.Canceled), codes.Canceled},
		{"not found", fmt.Errorf("pulling image docker.io/library/busybox:nope: %w", errdefs.ErrNotFound), codes.NotFound},
		{"bad reference", fmt.Errorf(`image reference "BusyBox": invalid: %w`, errdefs.ErrInvalidArgument), codes.InvalidArgument},
		{"unauthorized", fmt.Errorf("pulling image x: %w", errdefs.ErrUnauthenticated), codes.Unauthenticated},
		{"plain", errors.New("pulling image x: connection reset"), codes.Unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := testImages()
			fake.pullErr = tc.err
			ic, obs := imageClient(t, fake)
			resp, err := ic.PullImage(callContext(t), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "busybox:1.36"}})
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("PullImage = %v, want code %s", err, tc.code)
			}
			if resp.GetImageRef() != "" {
				t.Errorf("ImageRef %q with an error", resp.GetImageRef())
			}
			if !strings.Contains(st.Message(), "busybox") && !strings.Contains(st.Message(), "image") {
				t.Errorf("message %q does not say what failed", st.Message())
			}
			if got := obs.last(); got != (call{"PullImage", tc.code}) {
				t.Errorf("observed %+v", got)
			}
		})
	}
}

// The client's own deadline ends a pull the backend has not finished.
func TestPullImageClientDeadline(t *testing.T) {
	ic, _ := imageClient(t, blockingPull{testImages()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := ic.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "busybox"}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("PullImage with a 1 ms deadline = %v, want DeadlineExceeded", err)
	}
}

// blockingPull pulls until the call's context ends, as image.Service does.
type blockingPull struct{ *fakeImages }

func (blockingPull) Pull(ctx context.Context, name string, _ *image.Auth) (string, error) {
	<-ctx.Done()
	return "", fmt.Errorf("pulling %s: %w", name, ctx.Err())
}

func TestRemoveImage(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code codes.Code
	}{
		{"removed or absent", nil, codes.OK},
		{"backend not found", fmt.Errorf("image %q: %w", "x", errdefs.ErrNotFound), codes.NotFound},
		{"in use", fmt.Errorf("removing image x: %w", errdefs.ErrFailedPrecondition), codes.FailedPrecondition},
		{"plain", errors.New("removing image x: disk on fire"), codes.Unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := testImages()
			fake.removeErr = tc.err
			ic, _ := imageClient(t, fake)
			resp, err := ic.RemoveImage(callContext(t), &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: "example.com/whatever:1"}})
			if status.Code(err) != tc.code {
				t.Fatalf("RemoveImage = %v, want code %s", err, tc.code)
			}
			if tc.code == codes.OK && resp == nil {
				t.Error("nil response without an error")
			}
			if !slices.Equal(fake.removed, []string{"example.com/whatever:1"}) {
				t.Errorf("backend removed %q", fake.removed)
			}
		})
	}
}

func TestImageFsInfo(t *testing.T) {
	fake := testImages()
	ic, _ := imageClient(t, fake)
	ctx := callContext(t)
	resp, err := ic.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &runtime.ImageFsInfoResponse{ImageFilesystems: []*runtime.FilesystemUsage{{
		Timestamp:  time.Unix(100, 5).UnixNano(),
		FsId:       &runtime.FilesystemIdentifier{Mountpoint: "/var/lib/containerd/snapshots"},
		UsedBytes:  &runtime.UInt64Value{Value: 1234},
		InodesUsed: &runtime.UInt64Value{Value: 56},
	}}}
	if !proto.Equal(resp, want) {
		t.Errorf("ImageFsInfo = %v, want %v", resp, want)
	}

	fake.fsErr = fmt.Errorf("introspecting snapshotter overlayfs: %w", errdefs.ErrUnavailable)
	if _, err := ic.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("ImageFsInfo with a failing backend = %v, want Unavailable", err)
	}
}
