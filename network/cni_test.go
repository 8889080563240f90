package network

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recordingPlugins makes a bin dir whose plugins append "<type> <command>
// <netns>" to log and succeed, as a CNI DEL of a torn-down pod would.
func recordingPlugins(t *testing.T, log string, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\ncat >/dev/null\necho \"$(basename \"$0\") $CNI_COMMAND ${CNI_NETNS:--}\" >>" + log + "\n"
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestTeardownNetNSPath(t *testing.T) {
	dir := t.TempDir()
	bare := writeFile(t, dir, "bare", "") // a pin whose unmount was cut short
	cases := []struct {
		name, netns, want string
	}{
		{name: "mounted namespace is passed", netns: "/proc/self/ns/net", want: "/proc/self/ns/net"},
		{name: "missing pin is left out", netns: filepath.Join(dir, "gone"), want: "-"},
		{name: "bare file is left out", netns: bare, want: "-"},
		{name: "no netns", netns: "", want: "-"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "calls")
			bin := recordingPlugins(t, log, "bridge", "host-local", "portmap", "loopback")
			conf := t.TempDir()
			writeFile(t, conf, "10-net.conflist", bridgeList)
			m := NewManager(conf, []string{bin}, t.TempDir())
			pod := Pod{ID: "abc", Name: "p", Namespace: "ns", UID: "u", NetNS: tc.netns}
			if err := m.Teardown(context.Background(), pod, ""); err != nil {
				t.Fatalf("Teardown: %v", err)
			}
			raw, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			// bridge and portmap (DEL runs the list in reverse), then the loopback.
			if len(lines) != 3 {
				t.Fatalf("plugin calls = %q, want portmap, bridge and loopback", lines)
			}
			for _, l := range lines {
				f := strings.Fields(l)
				if len(f) != 3 || f[1] != "DEL" || f[2] != tc.want {
					t.Errorf("plugin call %q: want DEL with netns %q", l, tc.want)
				}
			}
		})
	}
}
