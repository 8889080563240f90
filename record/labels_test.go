package record

import (
	"maps"
	"strings"
	"testing"
)

func TestLabels(t *testing.T) {
	long := strings.Repeat("x", 4096)
	cases := []struct {
		name       string
		kind       string
		cri, image map[string]string
		own        map[string]string
		want       map[string]string
	}{
		{name: "kind only", kind: KindSandbox,
			want: map[string]string{"io.cri-containerd.kind": "sandbox"}},
		{name: "the kubelet's labels, over the image's", kind: KindContainer,
			cri:   map[string]string{"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": "web", "tier": "front"},
			image: map[string]string{"tier": "back", "org.opencontainers.image.title": "busybox"},
			own:   map[string]string{"io.peapod.kind": "container"},
			want: map[string]string{"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": "web", "tier": "front",
				"org.opencontainers.image.title": "busybox", "io.cri-containerd.kind": "container", "io.peapod.kind": "container"}},
		{name: "reserved namespaces are not copied", kind: KindContainer,
			cri:   map[string]string{"containerd.io/gc.ref.snapshot.overlayfs": "x", "io.peapod.kind": "sandbox", "io.cri-containerd.kind": "sandbox"},
			image: map[string]string{"containerd.io/gc.expire": "2000-01-01T00:00:00Z", "io.peapod.sandbox-id": "other"},
			own:   map[string]string{"io.peapod.kind": "container", "io.peapod.sandbox-id": "mine"},
			want:  map[string]string{"io.cri-containerd.kind": "container", "io.peapod.kind": "container", "io.peapod.sandbox-id": "mine"}},
		{name: "labels containerd would refuse are left out", kind: KindSandbox,
			cri:  map[string]string{"big": long, "": "no key", "ok": "1"},
			want: map[string]string{"ok": "1", "io.cri-containerd.kind": "sandbox"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Labels(tc.kind, tc.cri, tc.image, tc.own); !maps.Equal(got, tc.want) {
				t.Errorf("Labels = %v, want %v", got, tc.want)
			}
		})
	}
}
