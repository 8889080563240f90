package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakePlugins makes a bin dir holding an executable for each plugin name.
// Status only looks plugins up; it never runs them.
func fakePlugins(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const (
	bridgeList = `{"cniVersion":"1.0.0","name":"podnet","plugins":[
		{"type":"bridge","bridge":"t0","ipam":{"type":"host-local","subnet":"10.250.0.0/24"}},
		{"type":"portmap","capabilities":{"portMappings":true}}]}`
	singleConf  = `{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"t1"}`
	missingList = `{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"bridge"},{"type":"nosuchplugin"}]}`
)

func TestStatus(t *testing.T) {
	bin := fakePlugins(t, "bridge", "host-local", "portmap", "loopback")
	otherBin := fakePlugins(t, "loopback")

	cases := []struct {
		name    string
		files   map[string]string // in the conf dir; nil: the dir does not exist
		binDirs []string
		// want: Network and File base name when ready; substrings of Message otherwise.
		ready       bool
		network     string
		file        string
		wantMessage []string
	}{
		{name: "missing dir", files: nil, binDirs: []string{bin},
			wantMessage: []string{"no CNI network config found in"}},
		{name: "empty dir", files: map[string]string{}, binDirs: []string{bin},
			wantMessage: []string{"no CNI network config found in"}},
		{name: "other extensions ignored", files: map[string]string{"10-net.conflist.bak": bridgeList, "README": "x"}, binDirs: []string{bin},
			wantMessage: []string{"no CNI network config found in"}},
		{name: "invalid JSON", files: map[string]string{"10-net.conflist": `{"name":`}, binDirs: []string{bin},
			wantMessage: []string{"no usable CNI network config", "10-net.conflist"}},
		{name: "conflist without plugins", files: map[string]string{"10-net.conflist": `{"cniVersion":"1.0.0","name":"n","plugins":[]}`}, binDirs: []string{bin},
			wantMessage: []string{"10-net.conflist"}},
		{name: "conf without type", files: map[string]string{"10-net.conf": `{"cniVersion":"0.4.0","name":"n"}`}, binDirs: []string{bin},
			wantMessage: []string{"10-net.conf", "type"}},
		{name: "plugin binary missing", files: map[string]string{"10-net.conflist": missingList}, binDirs: []string{bin, otherBin},
			wantMessage: []string{"10-net.conflist", `plugin "nosuchplugin" not found`, bin + ":" + otherBin}},
		{name: "no plugin found in wrong bin dir", files: map[string]string{"10-net.conflist": bridgeList}, binDirs: []string{otherBin},
			wantMessage: []string{`plugin "bridge" not found in ` + otherBin}},
		// peapod runs the loopback plugin itself for every pod.
		{name: "loopback plugin missing", files: map[string]string{"10-net.conflist": bridgeList},
			binDirs:     []string{fakePlugins(t, "bridge", "host-local", "portmap")},
			wantMessage: []string{"10-net.conflist", `plugin "loopback" not found`}},
		{name: "valid conflist", files: map[string]string{"10-net.conflist": bridgeList}, binDirs: []string{bin},
			ready: true, network: "podnet", file: "10-net.conflist"},
		{name: "plugins spread over bin dirs", files: map[string]string{"10-net.conflist": bridgeList},
			binDirs: []string{otherBin, fakePlugins(t, "bridge"), fakePlugins(t, "portmap")},
			ready:   true, network: "podnet", file: "10-net.conflist"},
		{name: "single-plugin conf", files: map[string]string{"10-single.conf": singleConf}, binDirs: []string{bin},
			ready: true, network: "single", file: "10-single.conf"},
		{name: "single-plugin json", files: map[string]string{"10-single.json": singleConf}, binDirs: []string{bin},
			ready: true, network: "single", file: "10-single.json"},
		{name: "first by file name", files: map[string]string{"20-b.conflist": bridgeList, "10-a.conf": singleConf}, binDirs: []string{bin},
			ready: true, network: "single", file: "10-a.conf"},
		{name: "first usable by file name", files: map[string]string{
			"00-bad.conflist": `not json`, "05-broken.conflist": missingList, "10-good.conflist": bridgeList, "20-single.conf": singleConf,
		}, binDirs: []string{bin}, ready: true, network: "podnet", file: "10-good.conflist"},
		{name: "every problem listed", files: map[string]string{"00-bad.conflist": `not json`, "05-broken.conflist": missingList}, binDirs: []string{bin},
			wantMessage: []string{"00-bad.conflist: ", "05-broken.conflist: ", "nosuchplugin"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "net.d")
			if tc.files != nil {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				for name, content := range tc.files {
					writeFile(t, dir, name, content)
				}
			}
			st := NewManager(dir, tc.binDirs, "").Status()
			if st.Ready != tc.ready {
				t.Fatalf("Ready = %v, want %v (status %+v)", st.Ready, tc.ready, st)
			}
			if tc.ready {
				want := Status{Ready: true, Network: tc.network, File: filepath.Join(dir, tc.file)}
				if st != want {
					t.Errorf("Status = %+v, want %+v", st, want)
				}
				return
			}
			if st.Reason != NotReadyReason || st.Network != "" || st.File != "" {
				t.Errorf("not-ready Status = %+v, want reason %s and no network", st, NotReadyReason)
			}
			for _, w := range append(tc.wantMessage, dir) {
				if !strings.Contains(st.Message, w) {
					t.Errorf("message %q does not contain %q", st.Message, w)
				}
			}
		})
	}
}

func TestStatusUnreadableDir(t *testing.T) {
	// A file where the directory should be.
	notDir := writeFile(t, t.TempDir(), "net.d", "")
	st := NewManager(notDir, []string{fakePlugins(t, "bridge")}, "").Status()
	if st.Ready || st.Reason != NotReadyReason || !strings.Contains(st.Message, notDir) {
		t.Errorf("Status = %+v, want not ready naming %s", st, notDir)
	}
}

// TestStatusFollowsChanges checks that one Manager notices configs that
// appear, change and disappear, and plugins installed later, on the next call.
func TestStatusFollowsChanges(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "net.d")
	bin := fakePlugins(t, "bridge", "host-local", "loopback")
	m := NewManager(dir, []string{bin}, "")

	type step struct {
		name    string
		do      func(t *testing.T)
		ready   bool
		network string
		file    string
	}
	steps := []step{
		{name: "dir missing"},
		{name: "dir created empty", do: func(t *testing.T) { mkdir(t, dir) }},
		{name: "conflist needing a missing plugin", do: func(t *testing.T) { writeFile(t, dir, "10-net.conflist", bridgeList) }},
		{name: "plugin installed, no config change", do: func(t *testing.T) { writeFile(t, bin, "portmap", "#!/bin/sh\n") },
			ready: true, network: "podnet", file: "10-net.conflist"},
		{name: "unchanged", ready: true, network: "podnet", file: "10-net.conflist"},
		{name: "edited in place", do: func(t *testing.T) {
			writeFile(t, dir, "10-net.conflist", strings.Replace(bridgeList, `"podnet"`, `"renamed-podnet"`, 1))
		}, ready: true, network: "renamed-podnet", file: "10-net.conflist"},
		{name: "earlier file added", do: func(t *testing.T) { writeFile(t, dir, "05-single.conf", singleConf) },
			ready: true, network: "single", file: "05-single.conf"},
		{name: "earlier file broken", do: func(t *testing.T) { writeFile(t, dir, "05-single.conf", `{"broken":`) },
			ready: true, network: "renamed-podnet", file: "10-net.conflist"},
		{name: "edited to invalid", do: func(t *testing.T) { writeFile(t, dir, "10-net.conflist", `{"name":"x","plugins":`) }},
		{name: "fixed by rename into place", do: func(t *testing.T) {
			tmp := writeFile(t, root, "new.conflist", bridgeList)
			if err := os.Rename(tmp, filepath.Join(dir, "10-net.conflist")); err != nil {
				t.Fatal(err)
			}
		}, ready: true, network: "podnet", file: "10-net.conflist"},
		{name: "removed, broken one left", do: func(t *testing.T) { remove(t, filepath.Join(dir, "10-net.conflist")) }},
		{name: "all removed", do: func(t *testing.T) { remove(t, filepath.Join(dir, "05-single.conf")) }},
		{name: "dir removed", do: func(t *testing.T) { remove(t, dir) }},
		{name: "dir and config back", do: func(t *testing.T) {
			mkdir(t, dir)
			writeFile(t, dir, "99-last.conflist", bridgeList)
		}, ready: true, network: "podnet", file: "99-last.conflist"},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do(t)
		}
		st := m.Status()
		if st.Ready != s.ready {
			t.Fatalf("%s: Ready = %v, want %v (status %+v)", s.name, st.Ready, s.ready, st)
		}
		if s.ready && (st.Network != s.network || st.File != filepath.Join(dir, s.file)) {
			t.Fatalf("%s: Status = %+v, want network %q from %s", s.name, st, s.network, s.file)
		}
		if !s.ready && (st.Reason != NotReadyReason || st.Message == "") {
			t.Fatalf("%s: not-ready Status = %+v lacks reason or message", s.name, st)
		}
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
