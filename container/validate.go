package container

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// validate refuses a container config that could only fail later, in runc
// or in exec(2), with an error the kubelet cannot tell from a runtime
// fault: every refusal is InvalidArgument, naming the field.
func validate(cfg *runtime.ContainerConfig) error {
	md := cfg.GetMetadata()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("container %q: "+format+": %w", append([]any{md.GetName()}, append(a, errdefs.ErrInvalidArgument)...)...)
	}
	if md.GetName() == "" {
		return fmt.Errorf("container metadata needs a name: %w", errdefs.ErrInvalidArgument)
	}
	if hasControl(md.GetName()) {
		return bad("its name holds a control character")
	}
	if cfg.GetImage().GetImage() == "" {
		return bad("it names no image")
	}
	// exec(2) takes no NUL in an argument or the environment.
	for _, a := range append(append([]string{}, cfg.GetCommand()...), cfg.GetArgs()...) {
		if strings.ContainsRune(a, 0) {
			return bad("argument %q holds a NUL", a)
		}
	}
	for _, kv := range cfg.GetEnvs() {
		if kv.GetKey() == "" || strings.ContainsAny(kv.GetKey(), "=\x00") || bytes.IndexByte(kv.GetValue(), 0) >= 0 {
			return bad("environment variable %q is not a name=value pair", kv.GetKey())
		}
	}
	if wd := cfg.GetWorkingDir(); wd != "" && (!filepath.IsAbs(wd) || strings.ContainsRune(wd, 0)) {
		return bad("working directory %q is not an absolute path", wd)
	}
	if hasControl(cfg.GetLogPath()) {
		return bad("log path %q holds a control character", cfg.GetLogPath())
	}
	for _, m := range cfg.GetMounts() {
		if !absPath(m.GetContainerPath()) {
			return bad("mount destination %q is not an absolute path", m.GetContainerPath())
		}
		if m.GetImage().GetImage() == "" && !absPath(m.GetHostPath()) {
			return bad("mount source %q is not an absolute path", m.GetHostPath())
		}
	}
	for _, d := range cfg.GetDevices() {
		if !absPath(d.GetHostPath()) || !absPath(d.GetContainerPath()) {
			return bad("device %q → %q: paths must be absolute", d.GetHostPath(), d.GetContainerPath())
		}
		if strings.Trim(d.GetPermissions(), "rwm") != "" {
			return bad("device %s: permissions %q are not of r, w, m", d.GetHostPath(), d.GetPermissions())
		}
	}
	return validateResources(md.GetName(), cfg.GetLinux().GetResources())
}

// validateResources refuses resources no cgroup takes: negative limits,
// an OOM score out of the kernel's range, malformed cpusets.
func validateResources(name string, r *runtime.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("container %q resources: "+format+": %w", append([]any{name}, append(a, errdefs.ErrInvalidArgument)...)...)
	}
	for field, v := range map[string]int64{"cpu_period": r.GetCpuPeriod(), "cpu_shares": r.GetCpuShares(),
		"memory_limit_in_bytes": r.GetMemoryLimitInBytes(), "memory_swap_limit_in_bytes": r.GetMemorySwapLimitInBytes()} {
		if v < 0 && !(field == "memory_swap_limit_in_bytes" && v == -1) {
			return bad("%s is negative (%d)", field, v)
		}
	}
	if q := r.GetCpuQuota(); q < -1 {
		return bad("cpu_quota %d is below -1 (no limit)", q)
	}
	if a := r.GetOomScoreAdj(); a < -1000 || a > 1000 {
		return bad("oom_score_adj %d is out of [-1000, 1000]", a)
	}
	for field, v := range map[string]string{"cpuset_cpus": r.GetCpusetCpus(), "cpuset_mems": r.GetCpusetMems()} {
		if strings.Trim(v, "0123456789,-") != "" {
			return bad("%s %q is not a CPU list", field, v)
		}
	}
	for _, h := range r.GetHugepageLimits() {
		if hasControl(h.GetPageSize()) || strings.ContainsAny(h.GetPageSize(), "/.") {
			return bad("hugepage size %q", h.GetPageSize())
		}
	}
	for k := range r.GetUnified() {
		if k == "" || hasControl(k) || strings.ContainsAny(k, "/") || strings.Contains(k, "..") {
			return bad("unified key %q is not a cgroup file name", k)
		}
	}
	return nil
}

func absPath(p string) bool { return filepath.IsAbs(p) && !strings.ContainsRune(p, 0) }

// hasControl reports whether s holds an ASCII control character.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
