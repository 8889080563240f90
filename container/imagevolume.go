package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/image"
)

// Image volumes (KEP 4639): a CRI mount naming an image instead of a host
// path gets that image's files, read-only. Each is a read-only view snapshot
// of the image, mounted on the host under the container's state directory
// and bind-mounted (the whole view, or a sub path of it) into the container.
//
// What keeps the view alive: while CreateContainer runs, a lease of its own
// (peapod's views exist before the containerd container); after that, a
// reference label on the containerd container, so containerd's garbage
// collector keeps the view exactly as long as the container exists, on
// containerd 1.6 as on 2.x. RemoveContainer unmounts and removes the views;
// a restarted peapod remounts what a reboot unmounted and removes the views,
// mounts and directories a crash left without a container.
const (
	// imageVolumeLabel, on a view, names the container it serves.
	imageVolumeLabel = "io.peapod.image-volume.container"
	// gcSnapshotRef, followed by "<snapshotter>/<name>", is the containerd
	// container label that makes the container a GC reference to a snapshot.
	gcSnapshotRef = "containerd.io/gc.ref.snapshot."
)

// ImageVolume is one image mount of a container, as its record keeps it.
type ImageVolume struct {
	// Mount is the index of the CRI mount in the container's config.
	Mount int `json:"mount"`
	// ImageID is the image mounted.
	ImageID string `json:"imageID"`
	// Snapshot is the key of the image's read-only view.
	Snapshot string `json:"snapshot"`
	// Path is where the view is mounted on the host.
	Path string `json:"path"`
	// Source is what is bound into the container: Path, or the mount's
	// image sub path resolved within it.
	Source string `json:"source"`
}

// isImageMount reports whether a CRI mount is an image volume.
func isImageMount(mnt *runtime.Mount) bool { return mnt.GetImage() != nil }

func imageVolumeKey(containerID string, mount int) string {
	return fmt.Sprintf("%s-image-volume-%d", containerID, mount)
}

// imageVolumeRefLabel is the label by which container's containerd container
// references the view of its mount'th mount.
func imageVolumeRefLabel(mount int) string {
	return gcSnapshotRef + image.Snapshotter + "/image-volume-" + strconv.Itoa(mount)
}

// imageVolumesDir is the directory the container's views are mounted under,
// one subdirectory per mount.
func (m *Manager) imageVolumesDir(id string) string {
	return filepath.Join(m.config.StateDir, "containers", id, "image-volumes")
}

// prepareImageVolumes makes the image volumes of container id: for each
// image mount, a read-only view of the image mounted on the host, its sub
// path resolved. On failure it undoes what it did.
func (m *Manager) prepareImageVolumes(ctx context.Context, id string, mounts []*runtime.Mount) (_ []ImageVolume, retErr error) {
	var vols []ImageVolume
	defer func() {
		if retErr != nil {
			if err := m.releaseImageVolumes(context.WithoutCancel(ctx), id, vols); err != nil {
				klog.ErrorS(err, "Undoing the image volumes of a failed creation", "id", id)
			}
		}
	}()
	for i, mnt := range mounts {
		if !isImageMount(mnt) {
			continue
		}
		// Recorded before it is made, for the deferred undo to find.
		vols = append(vols, ImageVolume{Mount: i, Snapshot: imageVolumeKey(id, i)})
		v, err := m.prepareImageVolume(ctx, id, i, mnt)
		if err != nil {
			return nil, fmt.Errorf("image volume %s: %w", mnt.GetContainerPath(), err)
		}
		vols[len(vols)-1] = v
	}
	return vols, nil
}

// prepareImageVolume makes the image volume of the i'th mount; on failure,
// the caller undoes what it made.
func (m *Manager) prepareImageVolume(ctx context.Context, id string, i int, mnt *runtime.Mount) (ImageVolume, error) {
	ref := mnt.GetImage().GetImage()
	switch {
	case ref == "":
		return ImageVolume{}, fmt.Errorf("the mount names no image: %w", errdefs.ErrInvalidArgument)
	case mnt.GetHostPath() != "":
		return ImageVolume{}, fmt.Errorf("the mount names both image %q and host path %q: %w", ref, mnt.GetHostPath(), errdefs.ErrInvalidArgument)
	case mnt.GetContainerPath() == "":
		return ImageVolume{}, fmt.Errorf("image mount of %q has no container path: %w", ref, errdefs.ErrInvalidArgument)
	}
	sub, err := cleanSubPath(mnt.GetImageSubPath())
	if err != nil {
		return ImageVolume{}, err
	}
	img, err := m.images.Get(ctx, ref)
	if err != nil {
		return ImageVolume{}, fmt.Errorf("the image must be pulled first: %w", err)
	}
	handle, err := m.images.Handle(ctx, img)
	if err != nil {
		return ImageVolume{}, err
	}
	if ok, err := handle.IsUnpacked(ctx, image.Snapshotter); err != nil || !ok {
		if err := handle.Unpack(ctx, image.Snapshotter); err != nil {
			return ImageVolume{}, fmt.Errorf("unpacking image %s: %w", img.ID, err)
		}
	}
	state, err := filepath.EvalSymlinks(m.config.StateDir)
	if err != nil {
		return ImageVolume{}, fmt.Errorf("resolving the state directory: %w", err)
	}
	v := ImageVolume{
		Mount:    i,
		ImageID:  img.ID,
		Snapshot: imageVolumeKey(id, i),
		Path:     filepath.Join(state, "containers", id, "image-volumes", strconv.Itoa(i)),
	}
	sn := m.client.SnapshotService(image.Snapshotter)
	mounts, err := sn.View(ctx, v.Snapshot, img.ChainID, snapshots.WithLabels(map[string]string{imageVolumeLabel: id}))
	if err != nil {
		return ImageVolume{}, fmt.Errorf("making a read-only view of image %s: %w", img.ID, err)
	}
	if err := mountView(v.Path, mounts); err != nil {
		return ImageVolume{}, err
	}
	v.Source, err = resolveSubPath(v.Path, sub)
	if err != nil {
		return ImageVolume{}, fmt.Errorf("image %s: %w", ref, err)
	}
	klog.V(2).InfoS("Mounted image volume", "id", id, "image", img.ID, "path", v.Path, "source", v.Source)
	return v, nil
}

// mountView mounts a view's mounts read-only at path, creating it.
func mountView(path string, mounts []mount.Mount) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("creating the image volume's mount point: %w", err)
	}
	for i := range mounts {
		if !slices.Contains(mounts[i].Options, "ro") {
			mounts[i].Options = append(slices.Clone(mounts[i].Options), "ro")
		}
	}
	if err := mount.All(mounts, path); err != nil {
		_ = mount.UnmountAll(path, unix.MNT_DETACH)
		return fmt.Errorf("mounting the image volume at %s: %w", path, err)
	}
	return nil
}

// ensureImageVolumes mounts the container's views again where they are not
// mounted: the host's mounts do not survive a reboot, the containers do.
func (m *Manager) ensureImageVolumes(ctx context.Context, c *Container) error {
	sn := m.client.SnapshotService(image.Snapshotter)
	for _, v := range c.ImageVolumes {
		if mounted, err := isMountPoint(v.Path); err != nil {
			return err
		} else if mounted {
			continue
		}
		mounts, err := sn.Mounts(ctx, v.Snapshot)
		if err != nil {
			return fmt.Errorf("image volume of mount %d of container %s: view %s: %w", v.Mount, c.ID, v.Snapshot, err)
		}
		if err := mountView(v.Path, mounts); err != nil {
			return fmt.Errorf("image volume of mount %d of container %s: %w", v.Mount, c.ID, err)
		}
		if st, err := os.Stat(v.Source); err != nil || !st.IsDir() {
			return fmt.Errorf("image volume of mount %d of container %s: %s is no directory after mounting the view again: %w",
				v.Mount, c.ID, v.Source, errdefs.ErrFailedPrecondition)
		}
		klog.InfoS("Mounted an image volume again", "id", c.ID, "path", v.Path)
	}
	return nil
}

// isMountPoint reports whether path is a mount point; a missing path is not.
func isMountPoint(path string) (bool, error) {
	if _, err := os.Lstat(path); os.IsNotExist(err) {
		return false, nil
	}
	info, err := mount.Lookup(path)
	if err != nil {
		return false, fmt.Errorf("looking up the mount at %s: %w", path, err)
	}
	canonical, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false, err
	}
	return info.Mountpoint == canonical, nil
}

// releaseImageVolumes unmounts and removes the image volumes of container
// id: every mount under its image-volumes directory, the views (those in
// vols), and the directories. It is idempotent, and never removes a
// directory that is still mounted.
func (m *Manager) releaseImageVolumes(ctx context.Context, id string, vols []ImageVolume) error {
	var errs []error
	dir := m.imageVolumesDir(id)
	if err := mount.UnmountRecursive(dir, unix.MNT_DETACH); err != nil {
		errs = append(errs, fmt.Errorf("unmounting the image volumes of container %s: %w", id, err))
	}
	sn := m.client.SnapshotService(image.Snapshotter)
	for _, v := range vols {
		if err := sn.Remove(ctx, v.Snapshot); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing image volume view %s: %w", v.Snapshot, err))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, removeEmptyDirs(dir))
	}
	return errors.Join(errs...)
}

// removeEmptyDirs removes dir and its subdirectories, which must be empty:
// os.Remove fails on a mount point or a directory with files, so nothing is
// ever deleted through a mount left behind. A missing dir is fine.
func removeEmptyDirs(dir string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// recoverImageVolumes, at start-up, removes the views, mounts and directories of image volumes
// whose container does not exist, and mounts again the views of created
// containers that a reboot unmounted.
func (m *Manager) recoverImageVolumes(ctx context.Context) error {
	ctrs, err := m.client.ContainerService().List(ctx)
	if err != nil {
		return fmt.Errorf("listing containers to find orphaned image volumes: %w", err)
	}
	exists := map[string]bool{}
	for _, c := range ctrs {
		exists[c.ID] = true
	}
	orphans := map[string][]ImageVolume{}
	sn := m.client.SnapshotService(image.Snapshotter)
	err = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if owner, ok := info.Labels[imageVolumeLabel]; ok && !exists[owner] {
			orphans[owner] = append(orphans[owner], ImageVolume{Snapshot: info.Name})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing image volume views: %w", err)
	}
	var errs []error
	if entries, err := os.ReadDir(filepath.Join(m.config.StateDir, "containers")); err == nil {
		for _, e := range entries {
			id := e.Name()
			if _, listed := orphans[id]; listed || exists[id] {
				continue
			}
			if _, err := os.Stat(m.imageVolumesDir(id)); err == nil {
				orphans[id] = nil // mounts and directories without a view
			}
		}
	}
	for id, vols := range orphans {
		klog.InfoS("Removing the image volumes of a container that does not exist", "id", id, "views", len(vols))
		if err := m.releaseImageVolumes(ctx, id, vols); err != nil {
			errs = append(errs, fmt.Errorf("removing the orphaned image volumes of %s: %w", id, err))
			continue
		}
		// The container's state directory, if nothing else is in it.
		_ = os.Remove(filepath.Dir(m.imageVolumesDir(id)))
	}

	for _, c := range m.index.List() {
		if c.State != StateCreated || len(c.ImageVolumes) == 0 {
			continue
		}
		if err := m.ensureImageVolumes(ctx, &c); err != nil {
			errs = append(errs, fmt.Errorf("mounting the image volumes of %s again: %w", c.ID, err))
		}
	}
	return errors.Join(errs...)
}

// allowedMountOptions are the extra bind mount options a CRI mount may ask
// for (KEP 5855): each only takes a right away.
var allowedMountOptions = []string{"noexec", "nodev", "nosuid"}

// extraMountOptions returns a CRI mount's extra bind mount options, once
// each; an option that is not allowed is an InvalidArgument (one like "rw",
// "suid" or "shared" could undo what the mount's other fields ask).
func extraMountOptions(mnt *runtime.Mount) ([]string, error) {
	var out []string
	for _, o := range mnt.GetMountOptions() {
		if !slices.Contains(allowedMountOptions, o) {
			return nil, fmt.Errorf("mount %s: mount option %q is not supported, only %s: %w",
				mnt.GetContainerPath(), o, strings.Join(allowedMountOptions, ", "), errdefs.ErrInvalidArgument)
		}
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out, nil
}

// cleanSubPath checks an image sub path: relative, with no ".." (which the
// API server refuses too) and no NUL. It returns it cleaned, "." for the
// image's root.
func cleanSubPath(p string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("image sub path %q %s: %w", p, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case p == "":
		return ".", nil
	case strings.ContainsRune(p, 0):
		return bad("contains a NUL byte")
	case filepath.IsAbs(p):
		return bad("is absolute, not relative to the image's root")
	case slices.Contains(strings.Split(p, "/"), ".."):
		return bad("contains \"..\"")
	}
	return filepath.Clean(p), nil
}

// resolveSubPath resolves sub (checked by cleanSubPath) within root as if
// root were "/": ".." and symbolic links, absolute ones included, cannot
// lead out of it. The result, free of symbolic links, must be a directory
// within root; one that does not exist, or is no directory, is an
// InvalidArgument.
func resolveSubPath(root, sub string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("image sub path %q %s: %w", sub, why, errdefs.ErrInvalidArgument)
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", root, err)
	}
	defer unix.Close(rootFd)
	realRoot, err := fdPath(rootFd)
	if err != nil {
		return "", err
	}
	if sub == "." || sub == "" {
		return realRoot, nil
	}
	fd, err := unix.Openat2(rootFd, sub, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if errors.Is(err, unix.ENOSYS) {
		fd, err = openInRootFallback(realRoot, sub)
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return bad("does not exist in the image")
	case errors.Is(err, unix.ENOTDIR):
		return bad("is not a directory in the image")
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return bad("cannot be resolved within the image (" + err.Error() + ")")
	case err != nil:
		return "", fmt.Errorf("resolving image sub path %q: %w", sub, err)
	}
	defer unix.Close(fd)
	p, err := fdPath(fd)
	if err != nil {
		return "", err
	}
	if p != realRoot && !strings.HasPrefix(p, realRoot+"/") {
		return bad("resolves out of the image, to " + p)
	}
	return p, nil
}

// openInRootFallback opens sub within root on kernels without openat2
// (before 5.6), through Go's os.Root, which refuses symbolic links that lead
// out of root (absolute ones too) rather than resolving them within it.
func openInRootFallback(root, sub string) (int, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return -1, err
	}
	defer r.Close()
	f, err := r.Open(sub)
	if err != nil {
		if strings.Contains(err.Error(), "escapes") {
			return -1, unix.EXDEV
		}
		return -1, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return -1, err
	}
	if !st.IsDir() {
		return -1, unix.ENOTDIR
	}
	return unix.Dup(int(f.Fd()))
}

// fdPath is the path the kernel gives an open file descriptor.
func fdPath(fd int) (string, error) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("reading the path of an open directory: %w", err)
	}
	if !filepath.IsAbs(p) || strings.HasSuffix(p, " (deleted)") {
		return "", fmt.Errorf("open directory has no usable path (%q): %w", p, errdefs.ErrFailedPrecondition)
	}
	return p, nil
}
