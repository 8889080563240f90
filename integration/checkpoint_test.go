//go:build integration

package integration

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	crmetadata "github.com/checkpoint-restore/checkpointctl/lib"
	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/failpoint"
)

// counterScript writes a file, deletes one of the image's, and counts, both
// to its log and to /count, five times a second. /count is replaced, never
// rewritten: a reader of a file truncated and not yet written reads nothing.
const counterScript = `echo checkpointed >/marker; rm /etc/group; i=0; while true; do i=$((i+1)); echo $i; echo $i >/count.new; mv /count.new /count; sleep 0.2; done`

// needCRIU fails the test unless a CRIU that works here is on the PATH: the
// lab builds one (conformance/build-tools.sh).
func needCRIU(t *testing.T) {
	t.Helper()
	out, err := exec.Command("criu", "check").CombinedOutput()
	if err != nil {
		t.Fatalf("checkpoint tests need a working CRIU on the PATH (conformance/build-tools.sh installs one): criu check: %v\n%s", err, out)
	}
}

// peapodLeases lists the leases peapod holds for its operations in the
// env's namespace.
func (e *podEnv) peapodLeases() []string {
	e.t.Helper()
	ctx, cancel := e.ctrdCtx()
	defer cancel()
	ls, err := e.ctrd().LeasesService().List(ctx, `labels."io.peapod.lease"`)
	if err != nil {
		e.t.Fatalf("listing leases in %s: %v", e.ns, err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.ID+"="+l.Labels["io.peapod.lease"])
	}
	return out
}

// checkpointLeftovers is what a checkpoint may leave behind that it should
// not: its working directory, a partial archive in dir, a lease.
func (e *podEnv) checkpointLeftovers(id, dir string) error {
	var errs []error
	if _, err := os.Stat(filepath.Join(e.state(), "containers", id, "checkpoint")); err == nil {
		errs = append(errs, fmt.Errorf("the checkpoint working directory of %s is left", id))
	}
	if partial, _ := filepath.Glob(filepath.Join(dir, ".*.partial")); len(partial) > 0 {
		errs = append(errs, fmt.Errorf("partial archives: %q", partial))
	}
	if l := e.peapodLeases(); len(l) > 0 {
		errs = append(errs, fmt.Errorf("leases: %q", l))
	}
	return errors.Join(errs...)
}

func checkpoint(rt runtime.RuntimeServiceClient, t *testing.T, id, location string) error {
	_, err := rt.CheckpointContainer(podCtx(t), &runtime.CheckpointContainerRequest{ContainerId: id, Location: location, Timeout: 60})
	return err
}

// eachTarEntry calls fn with every entry of the tar file at path.
func eachTarEntry(t *testing.T, path string, fn func(*tar.Header, io.Reader)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		fn(hdr, tr)
	}
}

// untar extracts a checkpoint archive (files and directories only) into
// dir and returns its entries.
func untar(t *testing.T, archive, dir string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	eachTarEntry(t, archive, func(hdr *tar.Header, r io.Reader) {
		names[hdr.Name] = true
		path := filepath.Join(dir, hdr.Name)
		var err error
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o700)
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(r); err == nil {
				err = os.WriteFile(path, data, 0o600)
			}
		default:
			t.Fatalf("%s: entry %s of type %c", archive, hdr.Name, hdr.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	return names
}

// tarEntries reads a tar file's entries and the content of its regular files.
func tarEntries(t *testing.T, path string) map[string]string {
	t.Helper()
	out := map[string]string{}
	eachTarEntry(t, path, func(hdr *tar.Header, r io.Reader) {
		data, _ := io.ReadAll(r)
		out[strings.TrimPrefix(hdr.Name, "/")] = string(data)
	})
	return out
}

// counter reads a running counter container's /count.
func counter(t *testing.T, rt runtime.RuntimeServiceClient, id string) int {
	t.Helper()
	out, code := execSync(t, rt, id, "cat", "/count")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if code != 0 || err != nil {
		t.Fatalf("reading /count of %s: %q (exit %d)", id, out, code)
	}
	return n
}

// keepsCounting checks that a container's counter goes on.
func keepsCounting(t *testing.T, rt runtime.RuntimeServiceClient, id string) {
	t.Helper()
	before := counter(t, rt, id)
	eventually(t, 10*time.Second, "the container counts on", func() error {
		if now := counter(t, rt, id); now <= before {
			return fmt.Errorf("/count is still %d", now)
		}
		return nil
	})
}

// TestCheckpoint: CheckpointContainer writes an archive in the kubelet's
// checkpoint layout, whose parts make sense, and the container runs on;
// bad requests get clear codes; nothing is left behind.
func TestCheckpoint(t *testing.T) {
	t.Parallel()
	needCRIU(t)
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("checkpoint")
	sb := runPod(t, rt, cfg)
	c := startContainer(t, rt, sb, cfg, busybox("counter", counterScript))
	tty := busybox("tty", counterScript)
	tty.Tty, tty.Stdin = true, true
	ct := startContainer(t, rt, sb, cfg, tty)
	eventually(t, 10*time.Second, "the containers count", func() error {
		for _, id := range []string{c, ct} {
			if out, code := execSync(t, rt, id, "cat", "/count"); code != 0 {
				return fmt.Errorf("%s: /count: %q", id, out)
			}
		}
		return nil
	})

	out := filepath.Join(e.dir, "checkpoints")
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(out, "counter.tar")
	begin := time.Now()
	if err := checkpoint(rt, t, c, archive); err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	t.Logf("checkpoint of a counting busybox took %s", time.Since(begin))
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatalf("no archive: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600 (it holds the processes' memory)", fi.Mode().Perm())
	}

	// The layout the kubelet, CRI-O, containerd and checkpointctl share,
	// with CRIU's images of the container's first process (named by its
	// PID in the container's PID namespace).
	dir := t.TempDir()
	names := untar(t, archive, dir)
	initPid := nsPid(t, e.taskPid(c))
	for _, name := range []string{
		"checkpoint/", "checkpoint/inventory.img", "checkpoint/pstree.img",
		crmetadata.SpecDumpFile, crmetadata.ConfigDumpFile, crmetadata.StatusDumpFile,
		crmetadata.RootFsDiffTar, crmetadata.DumpLogFile, "stats-dump", "container.log",
	} {
		if !names[name] {
			t.Errorf("archive lacks %s (has %d entries)", name, len(names))
		}
	}
	for _, image := range []string{"core", "mm", "pagemap", "ids", "fs"} {
		if name := fmt.Sprintf("checkpoint/%s-%d.img", image, initPid); !names[name] {
			t.Errorf("archive lacks %s, of the container's first process (PID %d)", name, initPid)
		}
	}
	if pages, _ := filepath.Glob(filepath.Join(dir, "checkpoint", "pages-*.img")); len(pages) == 0 {
		t.Error("archive holds no memory pages")
	}
	if log, _ := os.ReadFile(filepath.Join(dir, crmetadata.DumpLogFile)); !strings.Contains(string(log), "Dumping finished successfully") {
		t.Errorf("CRIU's dump log does not end in success:\n%s", tail(string(log), 10))
	}
	conf, _, err := crmetadata.ReadContainerCheckpointConfigDump(dir)
	if err != nil {
		t.Fatalf("config.dump: %v", err)
	}
	if conf.ID != c || conf.Name != "counter" || conf.RootfsImageName != busyboxRef || conf.OCIRuntime != "io.containerd.runc.v2" ||
		conf.CheckpointedAt.Before(begin) || !strings.Contains(conf.RootfsImageRef, "@sha256:") {
		t.Errorf("config.dump = %+v", conf)
	}
	spec, _, err := crmetadata.ReadContainerCheckpointSpecDump(dir)
	if err != nil {
		t.Fatalf("spec.dump: %v", err)
	}
	if spec.Annotations["io.kubernetes.cri.container-name"] != "counter" || spec.Annotations["io.kubernetes.cri.sandbox-id"] != sb ||
		strings.Join(spec.Process.Args, " ") != "sh -c "+counterScript {
		t.Errorf("spec.dump: annotations %v, args %q", spec.Annotations, spec.Process.Args)
	}
	var st runtime.ContainerStatus
	if data, err := os.ReadFile(filepath.Join(dir, crmetadata.StatusDumpFile)); err != nil || json.Unmarshal(data, &st) != nil {
		t.Fatalf("status.dump: %v %s", err, data)
	}
	if st.Id != c || st.State != runtime.ContainerState_CONTAINER_RUNNING || st.GetMetadata().GetName() != "counter" {
		t.Errorf("status.dump = %v", &st)
	}
	// The writable layer: the file written, the one removed as a whiteout.
	diff := tarEntries(t, filepath.Join(dir, crmetadata.RootFsDiffTar))
	if diff["marker"] != "checkpointed\n" {
		t.Errorf("rootfs-diff.tar: marker is %q (entries %v)", diff["marker"], keys(diff))
	}
	if _, ok := diff["etc/.wh.group"]; !ok {
		t.Errorf("rootfs-diff.tar records no removal of /etc/group (entries %v)", keys(diff))
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "container.log")); !strings.Contains(string(log), " stdout F 1\n") {
		t.Errorf("container.log is not the container's CRI log: %q", tail(string(log), 3))
	}

	// The container was not stopped, and is not left paused.
	if st := containerStatus(t, rt, c).GetStatus().GetState(); st != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after the checkpoint the container is %s", st)
	}
	if st := e.taskStatus(c); st != "running" {
		t.Errorf("after the checkpoint the task is %q", st)
	}
	keepsCounting(t, rt, c)
	if err := e.checkpointLeftovers(c, out); err != nil {
		t.Error(err)
	}

	// Again to the same place: the archive is replaced, whole: it has the
	// first one's entries, but for those of the counter's sleep, there at
	// one dump and not at the other.
	if err := checkpoint(rt, t, c, archive); err != nil {
		t.Fatalf("CheckpointContainer again: %v", err)
	}
	first, again := firstProcessDump(names, initPid), firstProcessDump(untar(t, archive, t.TempDir()), initPid)
	if !maps.Equal(again, first) {
		t.Errorf("the second archive has %q,\nthe first %q", slices.Sorted(maps.Keys(again)), slices.Sorted(maps.Keys(first)))
	}
	// A container with a terminal (CRIU dumps it as a shell job).
	if err := checkpoint(rt, t, ct, filepath.Join(out, "tty.tar")); err != nil {
		t.Errorf("CheckpointContainer of a container with a terminal: %v", err)
	}
	keepsCounting(t, rt, ct)
	if err := e.checkpointLeftovers(ct, out); err != nil {
		t.Error(err)
	}

	// Bad requests.
	wantCode(t, "CheckpointContainer without a location", checkpoint(rt, t, c, ""), codes.InvalidArgument)
	wantCode(t, "CheckpointContainer to a relative path", checkpoint(rt, t, c, "counter.tar"), codes.InvalidArgument)
	wantCode(t, "CheckpointContainer into a missing directory", checkpoint(rt, t, c, filepath.Join(out, "no", "such.tar")), codes.InvalidArgument)
	wantCode(t, "CheckpointContainer to a directory", checkpoint(rt, t, c, out), codes.InvalidArgument)
	wantCode(t, "CheckpointContainer of an unknown container", checkpoint(rt, t, "no-such-container", archive), codes.NotFound)
	_, err = rt.CheckpointContainer(callCtx(t), &runtime.CheckpointContainerRequest{Location: archive})
	wantCode(t, "CheckpointContainer without an ID", err, codes.InvalidArgument)
	if _, err := rt.StopContainer(podCtx(t), &runtime.StopContainerRequest{ContainerId: c, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "CheckpointContainer of a stopped container", checkpoint(rt, t, c, filepath.Join(out, "stopped.tar")), codes.FailedPrecondition)
	if _, err := os.Stat(filepath.Join(out, "stopped.tar")); err == nil {
		t.Error("a refused checkpoint left an archive")
	}
	if err := e.checkpointLeftovers(c, out); err != nil {
		t.Error(err)
	}
}

// TestCheckpointCrash: a checkpoint cut short by a crash, while its task is
// paused or while its archive is written, leaves nothing once peapod is
// back: the task runs again, no partial archive, directory or lease is
// left, and the kubelet's retry succeeds.
func TestCheckpointCrash(t *testing.T) {
	t.Parallel()
	needCRIU(t)
	e := newPodEnv(t)
	out := filepath.Join(e.dir, "checkpoints")
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("checkpoint-crash")
	sb := runPod(t, rt, cfg)
	c := startContainer(t, rt, sb, cfg, busybox("counter", counterScript))
	eventually(t, 10*time.Second, "the container counts", func() error {
		if out, code := execSync(t, rt, c, "cat", "/count"); code != 0 {
			return fmt.Errorf("/count: %q", out)
		}
		return nil
	})

	for _, tc := range []struct {
		failpoint string
		left      func() error // proves where the crash cut
	}{
		{"container-checkpoint:paused", func() error {
			if st := e.taskStatus(c); st != "paused" {
				return fmt.Errorf("task is %q, want paused", st)
			}
			return nil
		}},
		{"container-checkpoint:before-rename", func() error {
			if partial, _ := filepath.Glob(filepath.Join(out, ".*.partial")); len(partial) != 1 {
				return fmt.Errorf("partial archives %q, want one", partial)
			}
			return nil
		}},
	} {
		e.d.signal(os.Kill)
		e.d.wait(podTimeout)
		d := e.start(failpoint.EnvVar + "=" + tc.failpoint)
		rt = d.waitServing()
		archive := filepath.Join(out, "crash.tar")
		wantCode(t, "CheckpointContainer as peapod dies at "+tc.failpoint, checkpoint(rt, t, c, archive), codes.Unavailable)
		d.wait(10 * time.Second)
		if !strings.Contains(d.stderr.String(), "Failpoint hit") {
			t.Fatalf("peapod exited without hitting its failpoint %s:\n%s", tc.failpoint, d.stderr.String())
		}
		if err := tc.left(); err != nil {
			t.Fatalf("after the crash at %s: %v", tc.failpoint, err)
		}

		rt, _ = e.serve()
		e.recovered(rt)
		if st := e.taskStatus(c); st != "running" {
			t.Errorf("after the recovery from a crash at %s, the task is %q, want running", tc.failpoint, st)
		}
		if err := e.checkpointLeftovers(c, out); err != nil {
			t.Errorf("after the recovery from a crash at %s: %v", tc.failpoint, err)
		}
		if _, err := os.Stat(archive); err == nil {
			t.Errorf("a crash at %s left an archive at %s", tc.failpoint, archive)
		}
		keepsCounting(t, rt, c)
		if err := checkpoint(rt, t, c, archive); err != nil {
			t.Errorf("the retried checkpoint after a crash at %s: %v", tc.failpoint, err)
		}
		os.Remove(archive)
	}
}

// nsPid is the PID that host process pid has in its own PID namespace.
func nsPid(t *testing.T, pid uint32) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if ids, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(ids)
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				t.Fatalf("/proc/%d/status: %q", pid, line)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no NSpid", pid)
	return 0
}

// criuProcessImage is the name of a CRIU image of one process (by its PID)
// or of its pages or files (by a number CRIU gives them in dump order).
var criuProcessImage = regexp.MustCompile(`^checkpoint/(core|mm|pagemap|ids|fs|pages|fdinfo)-([0-9]+)\.img$`)

// firstProcessDump is a checkpoint archive's entries without the images of
// every process but the container's first, initPid, which CRIU dumps first,
// so its pages and files have the lowest numbers: the others (a child,
// such as the counter's sleep) may or may not run at the dump.
func firstProcessDump(names map[string]bool, initPid int) map[string]bool {
	lowest := map[string]int{}
	for name := range names {
		if m := criuProcessImage.FindStringSubmatch(name); m != nil && (m[1] == "pages" || m[1] == "fdinfo") {
			n, _ := strconv.Atoi(m[2])
			if l, ok := lowest[m[1]]; !ok || n < l {
				lowest[m[1]] = n
			}
		}
	}
	out := map[string]bool{}
	for name := range names {
		if m := criuProcessImage.FindStringSubmatch(name); m != nil {
			n, _ := strconv.Atoi(m[2])
			if m[1] == "pages" || m[1] == "fdinfo" {
				if n != lowest[m[1]] {
					continue
				}
			} else if n != initPid {
				continue
			}
		}
		out[name] = true
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
