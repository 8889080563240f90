package container

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestLogPath(t *testing.T) {
	cases := []struct {
		dir, rel, want string
		invalid        bool
	}{
		{dir: "/var/log/pods/ns_pod_uid", rel: "app/0.log", want: "/var/log/pods/ns_pod_uid/app/0.log"},
		{dir: "/var/log/pods/p", rel: "/app.log", want: "/var/log/pods/p/app.log"},
		{dir: "/var/log/pods/p", rel: "a/../b.log", want: "/var/log/pods/p/b.log"},
		{dir: "/var/log/pods/p/", rel: "b.log", want: "/var/log/pods/p/b.log"},
		{dir: "", rel: "b.log", want: ""},
		{dir: "/var/log/pods/p", rel: "", want: ""},
		{dir: "/var/log/pods/p", rel: "../../../etc/cron.d/x", invalid: true},
		{dir: "/var/log/pods/p", rel: "..", invalid: true},
		{dir: "/var/log/pods/p", rel: ".", invalid: true},
		{dir: "/var/log/pods/p", rel: "a/../../p2/x.log", invalid: true},
		{dir: "relative/dir", rel: "x.log", invalid: true},
	}
	for _, tc := range cases {
		got, err := logPath(tc.dir, tc.rel)
		if tc.invalid {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("logPath(%q, %q) = %q, %v; want InvalidArgument", tc.dir, tc.rel, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("logPath(%q, %q) = %q, %v; want %q", tc.dir, tc.rel, got, err, tc.want)
		}
	}
}
