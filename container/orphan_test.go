package container

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOrphanBundlePath(t *testing.T) {
	const ns, id = "k8s", "0123abcd"
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"the bundle of the ID", errors.New("failed to create shim task: failed to start shim: mkdir /run/containerd/io.containerd.runtime.v2.task/k8s/0123abcd: file exists: unknown"),
			"/run/containerd/io.containerd.runtime.v2.task/k8s/0123abcd"},
		{"another namespace", errors.New("mkdir /run/containerd/io.containerd.runtime.v2.task/other/0123abcd: file exists"), ""},
		{"another ID", errors.New("mkdir /run/containerd/io.containerd.runtime.v2.task/k8s/0123abce: file exists"), ""},
		{"a path under the bundle", errors.New("mkdir /run/containerd/io.containerd.runtime.v2.task/k8s/0123abcd/rootfs: file exists"), ""},
		{"a path that climbs", errors.New("mkdir /run/x/../io.containerd.runtime.v2.task/k8s/0123abcd: file exists"), ""},
		{"another error", errors.New("mkdir /run/containerd/io.containerd.runtime.v2.task/k8s/0123abcd: permission denied"), ""},
		{"no error", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := orphanBundlePath(ns, id, tc.err); got != tc.want {
				t.Errorf("orphanBundlePath(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestLastChange(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	// An entry's change counts as the directory's: a shim writing its
	// files into a bundle changes it.
	if got := lastChange(dir); got.Before(old) {
		t.Errorf("lastChange of a directory just written = %s", got)
	}
	if got := lastChange(filepath.Join(dir, "missing")); time.Since(got) > time.Minute {
		t.Errorf("lastChange of a missing directory = %s, want about now (it is not taken for old)", got)
	}
}
