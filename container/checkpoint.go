package container

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	crmetadata "github.com/checkpoint-restore/checkpointctl/lib"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/pkg/rootfs"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/config"
	"github.com/peapod-cri/peapod/failpoint"
)

// Checkpoints (forensic container checkpointing, KEP 2008). Checkpoint
// writes an archive of a running container, which keeps running, in the
// layout the kubelet, CRI-O, containerd and checkpointctl share:
//
//	checkpoint/          CRIU's images of the container's processes
//	rootfs-diff.tar      the container's changes to its image's files
//	spec.dump            its OCI runtime spec
//	config.dump          what it is: ID, name, image, runtime, times
//	status.dump          its CRI ContainerStatus
//	container.log        its CRI log so far
//	dump.log, stats-dump CRIU's log and statistics
//
// The task is paused while CRIU dumps it and its writable layer is diffed,
// so processes and files are from one instant. What a crash mid-way can
// leave is recovered at start-up: a paused task is resumed (peapod never
// leaves one paused), the working directory and a partial archive are
// removed, and the lease on the diff ends.

// minCRIUVersion is the oldest CRIU peapod checkpoints with (3.16 is the
// first to dump the rseq areas of glibc 2.35+ processes; 3.17 is Debian 12's).
var minCRIUVersion = [3]int{3, 16, 0}

// checkpointDir is where a checkpoint of container id is assembled.
func (m *Manager) checkpointDir(id string) string {
	return filepath.Join(m.stateDir(id), "checkpoint")
}

// partialArchiveNote names the file that records the temporary archive of a
// checkpoint under way, so a restarted peapod can remove it.
func (m *Manager) partialArchiveNote(id string) string {
	return filepath.Join(m.stateDir(id), "checkpoint.partial")
}

// Checkpoint writes a checkpoint archive of running container id to
// location (an absolute file path; its directory must exist). status is the
// container's CRI status, kept in the archive. The container keeps running.
func (m *Manager) Checkpoint(ctx context.Context, id, location string, status *runtime.ContainerStatus) error {
	if err := checkCRIU(ctx); err != nil {
		return err
	}
	if err := checkLocation(location); err != nil {
		return err
	}
	c, unlock, err := m.locked(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if c.State != StateRunning {
		return fmt.Errorf("container %s is %s; only running containers can be checkpointed: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	sb, err := m.sandboxes.Get(ctx, c.SandboxID)
	if err != nil {
		return err
	}
	rh, err := m.config.Handlers.Get(sb.RuntimeHandler)
	if err != nil {
		return err
	}
	if rh.Type != config.RuncShim {
		return fmt.Errorf("container %s runs on runtime handler %q (%s), which cannot checkpoint: %w", c.ID, rh.Name, rh.Type, errdefs.ErrFailedPrecondition)
	}
	ctr, err := m.client.LoadContainer(ctx, c.ID)
	if err != nil {
		return fmt.Errorf("loading container %s: %w", c.ID, err)
	}
	info, err := ctr.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading container %s: %w", c.ID, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return fmt.Errorf("loading task of container %s: %w", c.ID, err)
	}

	m.checkpointing.Store(c.ID, true)
	defer m.checkpointing.Delete(c.ID)
	dir := m.checkpointDir(c.ID)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, crmetadata.CheckpointDirectory), 0o700); err != nil {
		return fmt.Errorf("making the checkpoint directory of container %s: %w", c.ID, err)
	}
	defer os.RemoveAll(dir)
	ctx, endLease, err := m.withLease(ctx, leaseCheckpoint, c.ID)
	if err != nil {
		return err
	}
	defer endLease()

	start := time.Now()
	// The dump runs to its end even if the caller gives up: cut short, it
	// would leave the task paused in the shim but running in runc, where
	// neither exec nor resume reaches it again. The caller's deadline counts
	// again once the task runs.
	if err := m.dump(context.WithoutCancel(ctx), task, &c, &info, dir); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpointing container %s took %s, past its deadline: %w", c.ID, time.Since(start).Round(time.Millisecond), err)
	}
	if err := writeCheckpointMetadata(&c, &info, status, dir); err != nil {
		return fmt.Errorf("writing the checkpoint of container %s: %w", c.ID, err)
	}
	if err := m.writeArchive(c.ID, dir, location); err != nil {
		return fmt.Errorf("writing the checkpoint archive of container %s: %w", c.ID, err)
	}
	klog.InfoS("Checkpointed container", "id", c.ID, "archive", location, "duration", time.Since(start))
	return nil
}

// dump has CRIU write images of container c's processes into dir, leaving
// them running, and writes the diff of its writable layer, both while the
// task is paused.
func (m *Manager) dump(ctx context.Context, task client.Task, c *Container, info *containers.Container, dir string) error {
	if err := task.Pause(ctx); err != nil {
		return fmt.Errorf("pausing container %s to checkpoint it: %w", c.ID, err)
	}
	defer func() {
		if err := task.Resume(ctx); err != nil {
			klog.ErrorS(err, "Resuming a checkpointed container", "id", c.ID)
		}
	}()
	failpoint.Hit("container-checkpoint:paused")
	opts, err := typeurl.MarshalAnyToProto(&options.CheckpointOptions{
		Exit:      false, // forensic checkpoints leave the container running
		ImagePath: filepath.Join(dir, crmetadata.CheckpointDirectory),
		WorkPath:  dir,
		// A terminal's other side is outside the container: CRIU must be
		// told it is a shell job.
		Terminal: c.Config.GetTty(),
	})
	if err != nil {
		return err
	}
	_, err = m.client.TaskService().Checkpoint(ctx, &tasks.CheckpointTaskRequest{ContainerID: c.ID, Options: opts})
	if err != nil {
		err = errgrpc.ToNative(err)
		if why := criuError(filepath.Join(dir, crmetadata.DumpLogFile)); why != "" {
			err = fmt.Errorf("%w (CRIU: %s)", err, why)
		}
		return fmt.Errorf("checkpointing container %s: %w", c.ID, err)
	}
	if err := m.writeRootfsDiff(ctx, info, filepath.Join(dir, crmetadata.RootFsDiffTar)); err != nil {
		return fmt.Errorf("diffing the writable layer of container %s: %w", c.ID, err)
	}
	return nil
}

// writeRootfsDiff writes the changes of the container's writable layer to
// its image, as an uncompressed layer tar, to path. containerd's differ
// makes the diff into its content store, under the context's lease.
func (m *Manager) writeRootfsDiff(ctx context.Context, info *containers.Container, path string) error {
	desc, err := rootfs.CreateDiff(ctx, info.SnapshotKey, m.client.SnapshotService(info.Snapshotter), m.client.DiffService(),
		diff.WithMediaType(ocispec.MediaTypeImageLayer),
		diff.WithReference("peapod-checkpoint-"+info.ID))
	if err != nil {
		return err
	}
	ra, err := m.client.ContentStore().ReaderAt(ctx, desc)
	if err != nil {
		return err
	}
	defer ra.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, content.NewReader(ra)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeCheckpointMetadata writes what describes the checkpoint beside
// CRIU's images: the OCI spec, the container's config and CRI status, and a
// copy of its log.
func writeCheckpointMetadata(c *Container, info *containers.Container, status *runtime.ContainerStatus, dir string) error {
	if info.Spec == nil {
		return fmt.Errorf("container %s has no OCI spec", c.ID)
	}
	cfg, err := json.Marshal(&crmetadata.ContainerConfig{
		ID:              c.ID,
		Name:            c.Config.GetMetadata().GetName(),
		RootfsImage:     c.ImageRef,
		RootfsImageRef:  status.GetImageRef(),
		RootfsImageName: c.ImageRef,
		OCIRuntime:      info.Runtime.Name,
		CreatedTime:     c.CreatedAt,
		CheckpointedAt:  time.Now(),
	})
	if err != nil {
		return err
	}
	st, err := json.Marshal(status)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		crmetadata.SpecDumpFile:   info.Spec.GetValue(),
		crmetadata.ConfigDumpFile: cfg,
		crmetadata.StatusDumpFile: st,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	if c.LogPath != "" {
		if err := copyRegularFile(c.LogPath, filepath.Join(dir, "container.log")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("copying the log: %w", err)
		}
	}
	return nil
}

// writeArchive tars dir into location: first into a temporary file beside
// it (recorded, so that a restarted peapod can remove it), then renamed, so
// that location only ever holds a whole archive.
func (m *Manager) writeArchive(id, dir, location string) (retErr error) {
	tmp, err := os.CreateTemp(filepath.Dir(location), "."+filepath.Base(location)+".*.partial")
	if err != nil {
		// Not a directory files can be made in (read-only, or a
		// pseudo-filesystem such as /proc): the location is unusable.
		return fmt.Errorf("checkpoint location %q: cannot write a file beside it: %v: %w", location, err, errdefs.ErrInvalidArgument)
	}
	note := m.partialArchiveNote(id)
	defer func() {
		if retErr != nil {
			os.Remove(tmp.Name())
		}
		os.Remove(note)
	}()
	if err := os.WriteFile(note, []byte(tmp.Name()), 0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	w := bufio.NewWriterSize(tmp, 1<<20)
	err = tarDir(w, dir)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	failpoint.Hit("container-checkpoint:before-rename")
	return os.Rename(tmp.Name(), location)
}

// tarDir writes the directories and regular files under dir to w as a tar
// stream, paths relative to dir.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file or directory", path)
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// copyRegularFile copies the regular file src to dst (mode 0600), not
// following a symbolic link at src.
func copyRegularFile(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// checkLocation refuses a checkpoint location that is not an absolute path
// in an existing directory, or that is a directory itself.
func checkLocation(location string) error {
	if location == "" {
		return fmt.Errorf("no checkpoint location given: %w", errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(location) {
		return fmt.Errorf("checkpoint location %q is not an absolute path: %w", location, errdefs.ErrInvalidArgument)
	}
	if fi, err := os.Stat(filepath.Dir(location)); err != nil || !fi.IsDir() {
		return fmt.Errorf("checkpoint location %q: directory %s does not exist: %w", location, filepath.Dir(location), errdefs.ErrInvalidArgument)
	}
	if fi, err := os.Stat(location); err == nil && fi.IsDir() {
		return fmt.Errorf("checkpoint location %q is a directory; it must name the archive file: %w", location, errdefs.ErrInvalidArgument)
	}
	return nil
}

// criuPassed is the CRIU binary (path, size and modification time) whose
// check last passed. criu check probes the kernel with sockets of fixed
// names, so two at once can fail each other ("Unable to connect a socket:
// Connection refused"): checks run one at a time, and a CRIU that passed is
// not checked again until it is replaced.
var criuPassed struct {
	sync.Mutex
	key string
}

// checkCRIU refuses a checkpoint on a node without a CRIU that can take it:
// none on the PATH (which the shims' runc searches too), one too old, or
// one that cannot work with this kernel (criu check).
func checkCRIU(ctx context.Context) error {
	path, err := exec.LookPath("criu")
	if err != nil {
		return fmt.Errorf("checkpoints need CRIU, which is not installed on this node: %w", errdefs.ErrFailedPrecondition)
	}
	var key string
	if fi, err := os.Stat(path); err == nil {
		key = fmt.Sprintf("%s %d %d", path, fi.Size(), fi.ModTime().UnixNano())
	}
	criuPassed.Lock()
	defer criuPassed.Unlock()
	if key != "" && key == criuPassed.key {
		return nil
	}
	if err := runCRIUCheck(ctx, path); err != nil {
		return err
	}
	criuPassed.key = key
	return nil
}

func runCRIUCheck(ctx context.Context, path string) error {
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return fmt.Errorf("checkpoints need CRIU, but %s --version failed: %v: %w", path, err, errdefs.ErrFailedPrecondition)
	}
	v, ok := parseCRIUVersion(out)
	if !ok {
		return fmt.Errorf("checkpoints need CRIU, but %s --version printed no version: %w", path, errdefs.ErrFailedPrecondition)
	}
	if olderThan(v, minCRIUVersion) {
		return fmt.Errorf("checkpoints need CRIU %d.%d or newer, this node has %d.%d.%d: %w",
			minCRIUVersion[0], minCRIUVersion[1], v[0], v[1], v[2], errdefs.ErrFailedPrecondition)
	}
	if out, err := exec.CommandContext(ctx, path, "check").CombinedOutput(); err != nil {
		why := firstError(out)
		if why == "" {
			why = err.Error()
		}
		return fmt.Errorf("CRIU %d.%d.%d (%s) cannot checkpoint on this node: %s: %w", v[0], v[1], v[2], path, why, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// parseCRIUVersion reads "Version: 3.17.1" from criu --version.
func parseCRIUVersion(out []byte) ([3]int, bool) {
	var v [3]int
	for line := range strings.Lines(string(out)) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Version:")
		if !ok {
			continue
		}
		n, _ := fmt.Sscanf(strings.TrimSpace(rest), "%d.%d.%d", &v[0], &v[1], &v[2])
		return v, n >= 2
	}
	return v, false
}

func olderThan(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// criuError is the first error CRIU logged in its dump log, if any.
func criuError(dumpLog string) string {
	data, err := os.ReadFile(dumpLog)
	if err != nil {
		return ""
	}
	return firstError(data)
}

// firstError is the first error line in CRIU's output: the cause, where
// later ones only report that the operation failed.
func firstError(out []byte) string {
	for line := range bytes.Lines(out) {
		if bytes.Contains(line, []byte("Error")) {
			return string(bytes.TrimSpace(line))
		}
	}
	return ""
}

// recoverCheckpoints, at start-up, removes what checkpoints a crash cut
// short left behind: working directories and partial archives. (Their
// paused tasks are resumed by resync, their leases ended with the others.)
func (m *Manager) recoverCheckpoints() error {
	entries, err := os.ReadDir(filepath.Join(m.config.StateDir, "containers"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		id := e.Name()
		if tmp, err := os.ReadFile(m.partialArchiveNote(id)); err == nil {
			if strings.HasSuffix(string(tmp), ".partial") {
				klog.InfoS("Removing the partial archive of an interrupted checkpoint", "id", id, "path", string(tmp))
				if err := os.Remove(string(tmp)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, fmt.Errorf("removing a partial checkpoint archive: %w", err))
					continue
				}
			}
			os.Remove(m.partialArchiveNote(id))
		}
		if _, err := os.Stat(m.checkpointDir(id)); err == nil {
			klog.InfoS("Removing the working directory of an interrupted checkpoint", "id", id)
			if err := os.RemoveAll(m.checkpointDir(id)); err != nil {
				errs = append(errs, fmt.Errorf("removing the checkpoint directory of %s: %w", id, err))
			}
		}
	}
	return errors.Join(errs...)
}

// resumeAbandoned resumes the paused task of container id, unless a
// checkpoint is under way: peapod pauses tasks only to checkpoint them, so
// a paused task is one whose checkpoint a crash cut short.
func (m *Manager) resumeAbandoned(ctx context.Context, id string) {
	if _, busy := m.checkpointing.Load(id); busy {
		return
	}
	klog.InfoS("Resuming a container paused by an interrupted checkpoint", "id", id)
	if _, err := m.client.TaskService().Resume(ctx, &tasks.ResumeTaskRequest{ContainerID: id}); err != nil && !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		klog.ErrorS(err, "Resuming a paused container", "id", id)
	}
}
