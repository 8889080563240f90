package container

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/image"
	"github.com/peapod-cri/peapod/runtimehandler"
	"github.com/peapod-cri/peapod/sandbox"
)

// Annotations on a container's OCI spec, in the CRI's well-known names.
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	annotationContainerName = "io.kubernetes.cri.container-name"
	annotationImageName     = "io.kubernetes.cri.image-name"
)

// specOpts builds the OCI spec of a container from its image and CRI config,
// joining the sandbox's namespaces.
func (m *Manager) specOpts(_ context.Context, c *Container, sb *sandbox.Sandbox, img image.Image, rh *runtimehandler.Handler) ([]oci.SpecOpts, error) {
	cfg := c.Config
	sc := cfg.GetLinux().GetSecurityContext()

	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
		return nil, fmt.Errorf("container %q sets run_as_group without run_as_user or run_as_username: %w",
			cfg.GetMetadata().GetName(), errdefs.ErrInvalidArgument)
	}
	args, err := processArgs(cfg, img)
	if err != nil {
		return nil, err
	}
	cwd := cfg.GetWorkingDir()
	if cwd == "" {
		cwd = img.Config.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	env := make([]string, 0, len(cfg.GetEnvs()))
	for _, kv := range cfg.GetEnvs() {
		env = append(env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	hostname, err := sb.Hostname()
	if err != nil {
		return nil, fmt.Errorf("hostname of pod sandbox %s: %w", sb.ID, err)
	}
	opts := []oci.SpecOpts{
		// The image's /run, not a tmpfs over it, as docker and containerd's
		// CRI give containers.
		oci.WithoutRunMount,
		sandbox.WithInheritedRlimits,
		oci.WithProcessArgs(args...),
		oci.WithProcessCwd(cwd),
		// HOSTNAME, as docker and containerd's CRI set it, before the
		// image's and the container's own environment, which may override it.
		oci.WithEnv([]string{"HOSTNAME=" + hostname}),
		oci.WithEnv(img.Config.Env),
		oci.WithEnv(env),
		oci.WithAnnotations(map[string]string{
			annotationContainerType: "container",
			annotationSandboxID:     sb.ID,
			annotationContainerName: cfg.GetMetadata().GetName(),
			annotationImageName:     c.ImageRef,
		}),
	}
	if cfg.GetTty() {
		opts = append(opts, oci.WithTTY)
	}
	nsOpts, err := m.namespaceOpts(sb, sc.GetNamespaceOptions())
	if err != nil {
		return nil, err
	}
	opts = append(opts, nsOpts...)
	opts = append(opts, cgroupNamespace(sc.GetPrivileged(), cgroups.Mode() == cgroups.Unified)...)
	if userns, err := sandbox.UserNSOf(sb.Config); err != nil {
		return nil, err
	} else if !userns.Same(sc.GetNamespaceOptions().GetUsernsOptions()) {
		return nil, fmt.Errorf("container %q asks for a user namespace other than its pod's: %w",
			cfg.GetMetadata().GetName(), errdefs.ErrInvalidArgument)
	} else if err := userns.CheckIDs(fmt.Sprintf("container %q", cfg.GetMetadata().GetName()),
		sc.GetRunAsUser(), sc.GetRunAsGroup(), sc.GetSupplementalGroups()); err != nil {
		return nil, err
	} else if userns != nil {
		opts = append(opts, userns.SpecOpt(sb.UserNS))
	}
	opts = append(opts, oci.WithCgroup(c.CgroupsPath))
	mounts, err := m.mounts(cfg, sb, sc.GetReadonlyRootfs(), rh.Features, c.ImageVolumes)
	if err != nil {
		return nil, err
	}
	opts = append(opts, withMounts(mounts), withRootfsPropagation(cfg.GetMounts()))
	for _, d := range cfg.GetDevices() {
		opts = append(opts, oci.WithDevices(d.GetHostPath(), d.GetContainerPath(), d.GetPermissions()))
	}
	opts = append(opts, userOpts(sc, img)...)
	secOpts, err := securityOpts(sc)
	if err != nil {
		return nil, err
	}
	opts = append(opts, secOpts...)
	res := cfg.GetLinux().GetResources()
	opts = append(opts, resourceOpts(c.ID, res, m.config.Host, path.Dir(c.CgroupsPath)), oomScoreAdjOpt(res, m.config.Host))
	// Last: what the container will run as, once every option had its say.
	opts = append(opts, recordUser(c), rh.SpecOpt())
	return opts, nil
}

// recordUser copies the spec's process identity into the container's record,
// which ContainerStatus reports.
func recordUser(c *Container) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			return nil
		}
		u := s.Process.User
		c.User = &User{UID: u.UID, GID: u.GID, Groups: slices.Clone(u.AdditionalGids)}
		return nil
	}
}

// processArgs applies the CRI's override rules: Command replaces the image's
// entrypoint (and drops its cmd), Args replace the cmd.
func processArgs(cfg *runtime.ContainerConfig, img image.Image) ([]string, error) {
	entrypoint, cmd := img.Config.Entrypoint, img.Config.Cmd
	if len(cfg.GetCommand()) > 0 {
		entrypoint, cmd = cfg.GetCommand(), nil
	}
	if len(cfg.GetArgs()) > 0 {
		cmd = cfg.GetArgs()
	}
	args := append(append([]string{}, entrypoint...), cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("container %q: neither its config nor image %s gives a command: %w",
			cfg.GetMetadata().GetName(), img.ID, errdefs.ErrInvalidArgument)
	}
	return args, nil
}

// namespaceOpts joins the pause container's namespaces: network and UTS
// always (or the host's), IPC unless the pod uses the host's, PID as the
// pod's namespace options say.
func (m *Manager) namespaceOpts(sb *sandbox.Sandbox, ns *runtime.NamespaceOption) ([]oci.SpecOpts, error) {
	podNS := sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	proc := func(kind string) string { return fmt.Sprintf("/proc/%d/ns/%s", sb.Pid, kind) }
	var opts []oci.SpecOpts
	if podNS.GetNetwork() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts,
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNS}),
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UTSNamespace, Path: proc("uts")}))
	}
	if podNS.GetIpc() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.IPCNamespace, Path: proc("ipc")}))
	}
	switch ns.GetPid() {
	case runtime.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	case runtime.NamespaceMode_POD:
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: proc("pid")}))
	case runtime.NamespaceMode_TARGET:
		target, err := m.index.Get(ns.GetTargetId())
		if err != nil || target.Pid == 0 {
			return nil, fmt.Errorf("target container %q of the PID namespace is not running: %w", ns.GetTargetId(), errdefs.ErrNotFound)
		}
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{
			Type: specs.PIDNamespace, Path: fmt.Sprintf("/proc/%d/ns/pid", target.Pid)}))
	}
	return opts, nil
}

// mounts returns the container's mounts: the pod's /etc/hosts,
// /etc/resolv.conf, /etc/hostname and /dev/shm, then the CRI mounts: host
// paths, and image volumes (vols, made by prepareImageVolumes) read-only.
func (m *Manager) mounts(cfg *runtime.ContainerConfig, sb *sandbox.Sandbox, readonlyRoot bool, features runtimehandler.Features, vols []ImageVolume) ([]specs.Mount, error) {
	taken := map[string]bool{}
	for _, mnt := range cfg.GetMounts() {
		taken[filepath.Clean(mnt.GetContainerPath())] = true
	}
	rw := "rw"
	if readonlyRoot {
		rw = "ro"
	}
	var out []specs.Mount
	if cg := cgroupMount(); !taken[cg.Destination] {
		out = append(out, cg)
	}
	for dst, src := range map[string]string{
		"/etc/hosts":       m.sandboxes.HostsPath(sb.ID),
		"/etc/resolv.conf": m.sandboxes.ResolvConfPath(sb.ID),
		"/etc/hostname":    m.sandboxes.HostnamePath(sb.ID),
	} {
		if !taken[dst] {
			out = append(out, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", rw}})
		}
	}
	if shm := m.sandboxes.ShmPath(sb); shm != "" && !taken["/dev/shm"] {
		out = append(out, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: shm,
			Options: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}})
	}
	for i, mnt := range cfg.GetMounts() {
		var src string
		if isImageMount(mnt) {
			idx := slices.IndexFunc(vols, func(v ImageVolume) bool { return v.Mount == i })
			if idx < 0 || vols[idx].Source == "" {
				return nil, fmt.Errorf("image mount %s was not prepared: %w", mnt.GetContainerPath(), errdefs.ErrFailedPrecondition)
			}
			src = vols[idx].Source
		} else {
			var err error
			if src, err = hostPathSource(mnt); err != nil {
				return nil, err
			}
		}
		options := []string{"rbind"}
		switch mnt.GetPropagation() {
		case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			options = append(options, "rshared")
		case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			options = append(options, "rslave")
		default:
			options = append(options, "rprivate")
		}
		ro, err := readOnlyOption(mnt, features)
		if err != nil {
			return nil, err
		}
		if ro == "rw" && isImageMount(mnt) {
			ro = "ro" // an image volume is read-only, whatever the mount says
		}
		extra, err := extraMountOptions(mnt)
		if err != nil {
			return nil, err
		}
		options = append(append(options, ro), extra...)
		out = append(out, specs.Mount{Destination: mnt.GetContainerPath(), Type: "bind", Source: src, Options: options,
			UIDMappings: idMappings(mnt.GetUidMappings()), GIDMappings: idMappings(mnt.GetGidMappings())})
	}
	return out, nil
}

// hostPathSource is the source of a host path mount: the path with its
// symbolic links resolved, created (as the kubelet's hostPath
// DirectoryOrCreate expects) when missing.
func hostPathSource(mnt *runtime.Mount) (string, error) {
	src := mnt.GetHostPath()
	if src == "" || mnt.GetContainerPath() == "" {
		return "", fmt.Errorf("mount %q → %q needs both paths: %w", src, mnt.GetContainerPath(), errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(src); os.IsNotExist(err) {
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", fmt.Errorf("creating host path %s: %w", src, err)
		}
	}
	resolved, err := filepath.EvalSymlinks(src)
	if err != nil {
		return "", fmt.Errorf("resolving host path %s: %w", src, err)
	}
	return resolved, nil
}

// idMappings converts a CRI mount's ID mappings (which make an ID-mapped
// mount, for pods with their own user namespace).
func idMappings(in []*runtime.IDMapping) []specs.LinuxIDMapping {
	var out []specs.LinuxIDMapping
	for _, m := range in {
		out = append(out, specs.LinuxIDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()})
	}
	return out
}

// readOnlyOption is a CRI mount's read-only mount option: "rro" (read-only
// all the way down, submounts included) where the CRI asks for recursive
// read-only, which must then be read-only and private, and the runtime
// handler must support it.
func readOnlyOption(mnt *runtime.Mount, features runtimehandler.Features) (string, error) {
	if !mnt.GetRecursiveReadOnly() {
		if mnt.GetReadonly() {
			return "ro", nil
		}
		return "rw", nil
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("recursive read-only mount %s: %s: %w", mnt.GetContainerPath(), why, errdefs.ErrInvalidArgument)
	}
	switch {
	case !mnt.GetReadonly():
		return bad("it must also be read-only")
	case mnt.GetPropagation() != runtime.MountPropagation_PROPAGATION_PRIVATE:
		return bad("its propagation must be private, not " + mnt.GetPropagation().String())
	case !features.RecursiveReadOnlyMounts:
		return bad("the pod's runtime handler does not support recursive read-only mounts")
	}
	return "rro", nil
}

// withMounts adds mounts, replacing default mounts at the same destinations.
// cgroupMount shows a container its own cgroups at /sys/fs/cgroup,
// read-only (privileged containers get it writable, by
// oci.WithWriteableCgroupfs), as docker and containerd's CRI do: programs
// size themselves from the limits they find there (the JVM's heap, the CPU
// counts of Go and nginx).
func cgroupMount() specs.Mount {
	return specs.Mount{
		Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
		Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"},
	}
}

// cgroupNamespace gives an unprivileged container a cgroup namespace of its
// own on a cgroup v2 host, so that its /sys/fs/cgroup is its own cgroup, as
// containerd's CRI does. On cgroup v1, and for privileged containers, it
// shares the host's.
func cgroupNamespace(privileged, unified bool) []oci.SpecOpts {
	if !unified || privileged {
		return nil
	}
	return []oci.SpecOpts{oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.CgroupNamespace})}
}

func withMounts(mounts []specs.Mount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		dsts := map[string]bool{}
		for _, m := range mounts {
			dsts[filepath.Clean(m.Destination)] = true
		}
		kept := s.Mounts[:0]
		for _, m := range s.Mounts {
			if !dsts[filepath.Clean(m.Destination)] {
				kept = append(kept, m)
			}
		}
		s.Mounts = append(kept, mounts...)
		return nil
	}
}

// withRootfsPropagation makes the container's root a shared (or slave)
// mount when a mount asks for bidirectional (or host-to-container)
// propagation, without which the mount's own propagation has no effect.
func withRootfsPropagation(mounts []*runtime.Mount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		for _, m := range mounts {
			switch m.GetPropagation() {
			case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
				s.Linux.RootfsPropagation = "rshared"
				return nil
			case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
				s.Linux.RootfsPropagation = "rslave"
			}
		}
		return nil
	}
}

// userOpts sets the process user: the security context's, else the image's,
// with its primary group, the groups /etc/group gives the user (unless the
// supplemental groups policy is Strict), and the pod's supplemental groups.
func userOpts(sc *runtime.LinuxContainerSecurityContext, img image.Image) []oci.SpecOpts {
	var opts []oci.SpecOpts
	userstr := img.Config.User
	switch {
	case sc.GetRunAsUser() != nil:
		uid := uint32(sc.GetRunAsUser().GetValue())
		opts = append(opts, oci.WithUserID(uid))
		userstr = fmt.Sprint(uid)
	case sc.GetRunAsUsername() != "":
		opts = append(opts, oci.WithUsername(sc.GetRunAsUsername()))
		userstr = sc.GetRunAsUsername()
	case userstr != "":
		opts = append(opts, oci.WithUser(userstr))
	}
	if g := sc.GetRunAsGroup(); g != nil && (sc.GetRunAsUser() != nil || sc.GetRunAsUsername() != "") {
		gid := uint32(g.GetValue())
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			s.Process.User.GID = gid
			return nil
		})
	}
	strict := sc.GetSupplementalGroupsPolicy() == runtime.SupplementalGroupsPolicy_Strict
	if !strict {
		// The groups the image's /etc/group puts the user in.
		user, _, _ := strings.Cut(userstr, ":")
		if user == "" {
			user = "0"
		}
		opts = append(opts, oci.WithAdditionalGIDs(user))
	}
	groups := sc.GetSupplementalGroups()
	opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		// The primary group first (Strict: nothing from the image), then the
		// pod's supplemental groups.
		gids := s.Process.User.AdditionalGids
		if strict {
			gids = nil
		}
		if !slices.Contains(gids, s.Process.User.GID) {
			gids = append([]uint32{s.Process.User.GID}, gids...)
		}
		for _, g := range groups {
			if !slices.Contains(gids, uint32(g)) {
				gids = append(gids, uint32(g))
			}
		}
		s.Process.User.AdditionalGids = gids
		return nil
	})
	return opts
}

// securityOpts applies the security context: privileges, capabilities,
// read-only root, no_new_privs, masked and read-only paths, seccomp.
func securityOpts(sc *runtime.LinuxContainerSecurityContext) ([]oci.SpecOpts, error) {
	var opts []oci.SpecOpts
	if sc.GetPrivileged() {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices,
			oci.WithMaskedPaths(nil), oci.WithReadonlyPaths(nil), oci.WithWriteableSysfs, oci.WithWriteableCgroupfs)
	} else {
		opts = append(opts, capabilityOpts(sc.GetCapabilities())...)
		// Exactly the paths the kubelet gives: its defaults for the Default
		// proc mount type, none for Unmasked (nested containers, user
		// namespaces), as containerd's CRI and CRI-O take them.
		opts = append(opts, oci.WithMaskedPaths(sc.GetMaskedPaths()), oci.WithReadonlyPaths(sc.GetReadonlyPaths()))
	}
	if sc.GetReadonlyRootfs() {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	// containerd's default spec sets no_new_privs; the CRI leaves it off
	// unless asked (setuid binaries must work).
	if sc.GetNoNewPrivs() {
		opts = append(opts, oci.WithNoNewPrivileges)
	} else {
		opts = append(opts, oci.WithNewPrivileges)
	}
	seccompOpt, err := seccompOpt(sc)
	if err != nil {
		return nil, err
	}
	if seccompOpt != nil {
		opts = append(opts, seccompOpt)
	}
	if ap := sc.GetApparmor(); ap.GetProfileType() == runtime.SecurityProfile_Localhost {
		return nil, fmt.Errorf("AppArmor profile %q requested, but AppArmor is not enabled on this host: %w",
			ap.GetLocalhostRef(), errdefs.ErrInvalidArgument)
	}
	return opts, nil
}

// seccompOpt picks the seccomp profile: none for privileged containers,
// else the security context's profile (or its deprecated path form), where
// an unset profile means unconfined, as the kubelet expects.
func seccompOpt(sc *runtime.LinuxContainerSecurityContext) (oci.SpecOpts, error) {
	if sc.GetPrivileged() {
		return nil, nil
	}
	if p := sc.GetSeccomp(); p != nil {
		switch p.GetProfileType() {
		case runtime.SecurityProfile_RuntimeDefault:
			return seccomp.WithDefaultProfile(), nil
		case runtime.SecurityProfile_Localhost:
			return seccomp.WithProfile(p.GetLocalhostRef()), nil
		}
		return nil, nil
	}
	switch path := sc.GetSeccompProfilePath(); {
	case path == "", path == "unconfined":
		return nil, nil
	case path == "runtime/default", path == "docker/default":
		return seccomp.WithDefaultProfile(), nil
	case strings.HasPrefix(path, "localhost/"):
		return seccomp.WithProfile(strings.TrimPrefix(path, "localhost/")), nil
	default:
		return nil, fmt.Errorf("unknown seccomp profile path %q: %w", path, errdefs.ErrInvalidArgument)
	}
}

// capabilityOpts applies a security context's capabilities in the order
// containerd's CRI and CRI-O apply them, so that one request means one set
// everywhere: ALL added, then ALL dropped, then each named add, then each
// named drop. A named drop thus always wins over a named add.
func capabilityOpts(caps *runtime.Capability) []oci.SpecOpts {
	if caps == nil {
		return nil
	}
	var opts []oci.SpecOpts
	add, addAll := capNames(caps.GetAddCapabilities())
	drop, dropAll := capNames(caps.GetDropCapabilities())
	if addAll {
		// What this host has: runc rejects capabilities the kernel lacks.
		opts = append(opts, oci.WithAllCurrentCapabilities)
	}
	if dropAll {
		opts = append(opts, oci.WithCapabilities(nil))
	}
	if len(add) > 0 {
		opts = append(opts, oci.WithAddedCapabilities(add))
	}
	if len(drop) > 0 {
		opts = append(opts, oci.WithDroppedCapabilities(drop))
	}
	return opts
}

// capNames turns CRI capability names ("NET_ADMIN") into OCI ones
// ("CAP_NET_ADMIN"), leaving out "ALL", which it reports apart.
func capNames(caps []string) (names []string, all bool) {
	for _, c := range caps {
		c = strings.ToUpper(c)
		if c == "ALL" {
			all = true
			continue
		}
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		names = append(names, c)
	}
	return names, all
}
