package server

import (
	"context"
	"errors"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/container"
)

// statsContainers lists containers, and fails the stats of those in broken.
type statsContainers struct {
	Containers // the rest is not called
	list       []container.Container
	broken     map[string]bool
}

func (f statsContainers) List(context.Context) ([]container.Container, error) { return f.list, nil }

func (f statsContainers) Stats(_ context.Context, c container.Container) (container.Stats, error) {
	if f.broken[c.ID] {
		return container.Stats{}, errors.New("reading cgroup: no such device")
	}
	return container.Stats{}, nil
}

// A container whose stats cannot be read is left out of the list; the
// others are still reported.
func TestListContainerStatsSkipsABrokenContainer(t *testing.T) {
	mk := func(id string) container.Container {
		return container.Container{Record: container.Record{Metadata: container.Metadata{ID: id}}, Config: &runtime.ContainerConfig{}}
	}
	s := &Service{containers: statsContainers{
		list:   []container.Container{mk("good1"), mk("broken"), mk("good2")},
		broken: map[string]bool{"broken": true},
	}}
	resp, err := s.ListContainerStats(context.Background(), &runtime.ListContainerStatsRequest{})
	if err != nil {
		t.Fatalf("ListContainerStats: %v", err)
	}
	var ids []string
	for _, st := range resp.GetStats() {
		ids = append(ids, st.GetAttributes().GetId())
	}
	if len(ids) != 2 || ids[0] != "good1" || ids[1] != "good2" {
		t.Errorf("stats of %v, want good1 and good2", ids)
	}
}

// The image a container's status names: what the user asked for, else a
// tag when the config names the image by ID, else the config's.
func TestStatusImage(t *testing.T) {
	s := &Service{images: testImages()}
	mk := func(spec *runtime.ImageSpec) container.Container {
		return container.Container{Record: container.Record{Metadata: container.Metadata{ID: "c", ImageID: busyboxID}},
			Config: &runtime.ContainerConfig{Image: spec}}
	}
	cases := []struct {
		name string
		spec *runtime.ImageSpec
		want string
	}{
		{"kubelet: ID plus the user's image", &runtime.ImageSpec{Image: busyboxID, UserSpecifiedImage: "busybox:1.36"}, "busybox:1.36"},
		{"ID alone", &runtime.ImageSpec{Image: busyboxID}, busyboxTag},
		{"short ID alone", &runtime.ImageSpec{Image: busyboxID[7:19]}, busyboxTag},
		{"a reference", &runtime.ImageSpec{Image: "busybox:1.36"}, "busybox:1.36"},
	}
	for _, tc := range cases {
		if got := s.statusImage(context.Background(), mk(tc.spec)).GetImage(); got != tc.want {
			t.Errorf("%s: status image %q, want %q", tc.name, got, tc.want)
		}
	}
}
