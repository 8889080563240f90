package container

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseCRIUVersion(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want [3]int
		ok   bool
	}{
		{"Version: 3.17.1\n", [3]int{3, 17, 1}, true},
		{"Version: 4.0\nGitID: v4.0-12-gabc\n", [3]int{4, 0, 0}, true},
		{"  Version:   3.19.2  \n", [3]int{3, 19, 2}, true},
		{"Version: x\n", [3]int{}, false},
		{"criu: unknown option\n", [3]int{}, false},
		{"", [3]int{}, false},
	} {
		got, ok := parseCRIUVersion([]byte(tc.out))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseCRIUVersion(%q) = %v, %v; want %v, %v", tc.out, got, ok, tc.want, tc.ok)
		}
	}
}

// fakeCRIU puts a criu on PATH that prints version and whose check fails
// with checkErr (if not ""); no criu at all when version is "".
func fakeCRIU(t *testing.T, version, checkErr string) {
	dir := t.TempDir()
	if version != "" {
		script := "#!/bin/sh\ncase $1 in\n--version) echo 'Version: " + version + "' ;;\n"
		if checkErr != "" {
			script += "check) echo 'Warn (criu/kerndat.c:1): something'; echo '" + checkErr + "' >&2; exit 1 ;;\n"
		} else {
			script += "check) echo 'Looks good.' ;;\n"
		}
		script += "esac\n"
		if err := os.WriteFile(filepath.Join(dir, "criu"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
}

func TestCheckCRIU(t *testing.T) {
	vdso := "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"
	for _, tc := range []struct {
		name, version, checkErr string
		want                    string // "" for no error, else a part of the message
	}{
		{"none", "", "", "not installed"},
		{"too old", "3.15.0", "", "3.16 or newer"},
		{"kernel unsupported", "3.17.1", vdso, "cannot checkpoint on this node: " + vdso},
		{"3.16", "3.16", "", ""},
		{"4.1.1", "4.1.1", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeCRIU(t, tc.version, tc.checkErr)
			err := checkCRIU(context.Background())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("checkCRIU: %v", err)
				}
				return
			}
			if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkCRIU = %v; want FailedPrecondition containing %q", err, tc.want)
			}
		})
	}
}

// TestCheckCRIUOnce: a CRIU that passed its check is not checked again (two
// checks at once can fail each other); one that failed is.
func TestCheckCRIUOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		check  string // the fake's check command
		ok     bool
		checks int // checks run by three checkCRIU calls
	}{
		{"passes", "echo 'Looks good.'", true, 1},
		{"fails", "echo 'Error (criu/kerndat.c:732): Unable to connect a socket: Connection refused' >&2; exit 1", false, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			count := filepath.Join(dir, "checks")
			script := "#!/bin/sh\ncase $1 in\n--version) echo 'Version: 4.1.1' ;;\ncheck) echo x >>" + count + "; " + tc.check + " ;;\nesac\n"
			if err := os.WriteFile(filepath.Join(dir, "criu"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", dir)
			for range 3 {
				if err := checkCRIU(context.Background()); (err == nil) != tc.ok {
					t.Fatalf("checkCRIU = %v, want ok %v", err, tc.ok)
				}
			}
			b, _ := os.ReadFile(count)
			if n := strings.Count(string(b), "x"); n != tc.checks {
				t.Errorf("criu check ran %d times, want %d", n, tc.checks)
			}
		})
	}
}

func TestCheckLocation(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		location string
		ok       bool
	}{
		{filepath.Join(dir, "cp.tar"), true},
		{"", false},
		{"cp.tar", false},
		{filepath.Join(dir, "missing", "cp.tar"), false},
		{dir, false},
	} {
		err := checkLocation(tc.location)
		if tc.ok != (err == nil) || (err != nil && !errdefs.IsInvalidArgument(err)) {
			t.Errorf("checkLocation(%q) = %v; want ok=%v or InvalidArgument", tc.location, err, tc.ok)
		}
	}
}

func TestTarDir(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"config.dump":               `{"id":"x"}`,
		"checkpoint/inventory.img":  "inventory",
		"checkpoint/pages-1.img":    strings.Repeat("p", 100000),
		"checkpoint/empty/.keep":    "",
		"rootfs-diff.tar":           "diff",
		"container.log":             "log\n",
		"checkpoint/nested/a/b.img": "b",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "cp.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarDir(f, dir); err != nil {
		t.Fatalf("tarDir: %v", err)
	}
	f.Close()

	f, err = os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	var dirs []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, hdr.Name)
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got[hdr.Name] = string(data)
	}
	if len(got) != len(files) {
		t.Errorf("archive holds %d files, want %d: %v", len(got), len(files), got)
	}
	for name, data := range files {
		if got[name] != data {
			t.Errorf("%s: got %d bytes, want %d", name, len(got[name]), len(data))
		}
	}
	for _, d := range []string{"checkpoint/", "checkpoint/empty/", "checkpoint/nested/", "checkpoint/nested/a/"} {
		if !slices.Contains(dirs, d) {
			t.Errorf("directory %s missing from the archive (has %v)", d, dirs)
		}
	}

	// Anything but files and directories is refused, not archived as is.
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := tarDir(io.Discard, dir); err == nil {
		t.Error("tarDir archived a symbolic link")
	}
}

func TestCopyRegularFile(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := os.WriteFile(src, []byte("2026-11-29T00:00:00Z stdout F hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := copyRegularFile(src, dst); err != nil {
		t.Fatalf("copyRegularFile: %v", err)
	}
	if data, _ := os.ReadFile(dst); string(data) != "2026-11-29T00:00:00Z stdout F hello\n" {
		t.Errorf("copied %q", data)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
		t.Errorf("copy has mode %v, want 0600", fi.Mode().Perm())
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	if err := copyRegularFile(link, dst); err == nil {
		t.Error("copyRegularFile followed a symbolic link")
	}
	if err := copyRegularFile(filepath.Join(dir, "missing"), dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("copying a missing file: %v, want ErrNotExist", err)
	}
}

func TestCRIUError(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "dump.log")
	if got := criuError(log); got != "" {
		t.Errorf("criuError without a log = %q", got)
	}
	content := "(00.001) Dumping task\n(00.002) Error (criu/tty.c:1): tty: Can't dump\n(00.003) Error (criu/cr-dump.c:2): Dumping FAILED.\n(00.004) Unfreezing\n"
	if err := os.WriteFile(log, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := criuError(log), "(00.002) Error (criu/tty.c:1): tty: Can't dump"; got != want {
		t.Errorf("criuError = %q, want %q", got, want)
	}
}
