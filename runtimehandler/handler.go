// Package runtimehandler owns peapod's runtime handlers: the named ways of
// running a pod (a containerd shim type and its OCI runtime binary) that a
// RuntimeClass selects, and what each can do, found out once at start-up.
//
// peapod picks the OCI runtime binary itself (the runc shim's BinaryName
// option) instead of leaving it to containerd's PATH, so that features such
// as user namespaces and recursive read-only mounts depend on the runc peapod
// is configured with, not on the containerd it happens to drive.
package runtimehandler

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/config"
)

// Features are what a handler can do beyond the basics, as the CRI Status
// advertises them per handler.
type Features struct {
	// RecursiveReadOnlyMounts: the runtime knows the "rro" mount option and
	// the kernel has mount_setattr.
	RecursiveReadOnlyMounts bool `json:"recursiveReadOnlyMounts"`
	// UserNamespaces: the runtime can create user namespaces with
	// ID-mapped mounts, and the kernel supports ID-mapped mounts.
	UserNamespaces bool `json:"userNamespaces"`
	// OCIVersion is the newest OCI runtime spec version the runtime takes
	// ("" if it does not say).
	OCIVersion string `json:"ociVersion,omitempty"`
}

// Handler is one runtime handler.
type Handler struct {
	Name string `json:"name"`
	config.Runtime
	Features Features `json:"features"`
}

// ContainerOpt has containerd run a container with this handler's shim and
// OCI runtime.
func (h *Handler) ContainerOpt() client.NewContainerOpts {
	if h.Type != config.RuncShim || (h.Binary == "" && h.Root == "") {
		return client.WithRuntime(h.Type, nil)
	}
	return client.WithRuntime(h.Type, &options.Options{BinaryName: h.Binary, Root: h.Root})
}

// SpecOpt marks the spec with a version the handler's runtime takes: an
// older runtime (crun 1.8 takes only 1.0.x) refuses newer versions, while
// the fields peapod sets mean the same in 1.0.
func (h *Handler) SpecOpt() oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if h.Features.OCIVersion != "" && olderVersion(h.Features.OCIVersion, s.Version) {
			s.Version = h.Features.OCIVersion
		}
		return nil
	}
}

// olderVersion compares "major.minor.patch[-suffix]" versions by their
// numbers; a suffix ("1.0.2-dev") does not count.
func olderVersion(a, b string) bool {
	num := func(v string) [3]int {
		var out [3]int
		v, _, _ = strings.Cut(v, "-")
		for i, part := range strings.SplitN(v, ".", 3) {
			out[i], _ = strconv.Atoi(part)
		}
		return out
	}
	x, y := num(a), num(b)
	return slices.Compare(x[:], y[:]) < 0
}

// Set is the configured handlers, one of them the default.
type Set struct {
	def      string
	handlers map[string]*Handler
}

// Load builds the handler set from the configuration, adding a crun handler
// when crun is installed and none is configured, and probes each handler's
// features. A probe that fails leaves the feature off: a pod that needs it
// is then refused, instead of failing inside the runtime.
func Load(ctx context.Context, cfg *config.Config, p *Prober) *Set {
	runtimes := maps.Clone(cfg.Runtimes)
	if _, ok := runtimes["crun"]; !ok {
		if path, err := exec.LookPath("crun"); err == nil {
			// Installed is not enough: crun 1.8, for one, cannot run
			// containers on a host with hybrid cgroups.
			if err := p.Runs(ctx, path); err != nil {
				klog.InfoS("crun is installed but cannot run containers here; no crun handler", "binary", path, "err", err)
			} else {
				runtimes["crun"] = config.Runtime{Type: config.RuncShim, Binary: path}
			}
		}
	}
	s := &Set{def: cfg.DefaultRuntime, handlers: map[string]*Handler{}}
	for name, r := range runtimes {
		h := &Handler{Name: name, Runtime: r}
		if r.Type == config.RuncShim {
			h.Features = p.Features(ctx, r.Binary)
		}
		s.handlers[name] = h
		klog.InfoS("Runtime handler", "name", name, "type", r.Type, "binary", r.Binary,
			"rro", h.Features.RecursiveReadOnlyMounts, "userns", h.Features.UserNamespaces, "default", name == s.def)
	}
	return s
}

// NewSet returns a set of the given handlers (for tests and callers that
// probe on their own); def names the default.
func NewSet(def string, handlers ...*Handler) *Set {
	s := &Set{def: def, handlers: map[string]*Handler{}}
	for _, h := range handlers {
		s.handlers[h.Name] = h
	}
	return s
}

// Get returns the handler a pod names; "" is the default handler.
func (s *Set) Get(name string) (*Handler, error) {
	if name == "" {
		name = s.def
	}
	h, ok := s.handlers[name]
	if !ok {
		return nil, fmt.Errorf("unknown runtime handler %q (configured: %v): %w",
			name, slices.Sorted(maps.Keys(s.handlers)), errdefs.ErrInvalidArgument)
	}
	return h, nil
}

// List returns the handlers by name.
func (s *Set) List() []*Handler {
	out := make([]*Handler, 0, len(s.handlers))
	for _, name := range slices.Sorted(maps.Keys(s.handlers)) {
		out = append(out, s.handlers[name])
	}
	return out
}

// Status describes the handlers as the CRI Status does: the default first,
// under the empty name (what a pod without a RuntimeClass asks for), then
// every handler by name.
func (s *Set) Status() []*runtime.RuntimeHandler {
	out := []*runtime.RuntimeHandler{criHandler("", s.handlers[s.def])}
	for _, h := range s.List() {
		out = append(out, criHandler(h.Name, h))
	}
	return out
}

func criHandler(name string, h *Handler) *runtime.RuntimeHandler {
	return &runtime.RuntimeHandler{Name: name, Features: &runtime.RuntimeHandlerFeatures{
		RecursiveReadOnlyMounts: h.Features.RecursiveReadOnlyMounts,
		UserNamespaces:          h.Features.UserNamespaces,
	}}
}
