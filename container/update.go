package container

import (
	"context"
	"fmt"
	"path"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateResources changes a container's CPU, memory and hugepage limits:
// in its running task's cgroup, in its spec (for a later start), and in its
// record (so a restarted peapod reports the new values).
func (m *Manager) UpdateResources(ctx context.Context, id string, r *runtime.LinuxContainerResources) error {
	if r == nil {
		return fmt.Errorf("no Linux resources to update: %w", errdefs.ErrInvalidArgument)
	}
	c, unlock, err := m.locked(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if err := validateResources(c.Config.GetMetadata().GetName(), r); err != nil {
		return err
	}
	if c.State == StateExited {
		return fmt.Errorf("container %s has exited: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	ctr, err := m.client.LoadContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return fmt.Errorf("reading spec of container %s: %w", c.ID, err)
	}
	// The update applies to the current limits: what it leaves zero stays
	// as it was, as containerd's CRI applies updates.
	if err := resourceOpts(c.ID, r, m.config.Host, path.Dir(c.CgroupsPath))(ctx, nil, nil, spec); err != nil {
		return fmt.Errorf("applying resources to container %s: %w", c.ID, err)
	}
	if c.State == StateRunning {
		task, err := ctr.Task(ctx, nil)
		if err != nil {
			return fmt.Errorf("loading task of container %s: %w", c.ID, err)
		}
		if err := task.Update(ctx, client.WithResources(spec.Linux.Resources)); err != nil {
			return fmt.Errorf("updating resources of container %s: %w", c.ID, err)
		}
	}
	// The spec alone (a field-path update): the status writer may write
	// the container's status meanwhile.
	anySpec, err := typeurl.MarshalAny(spec)
	if err != nil {
		return err
	}
	if _, err := m.client.ContainerService().Update(ctx, containers.Container{ID: c.ID, Spec: anySpec}, "spec"); err != nil {
		return fmt.Errorf("recording spec of container %s: %w", c.ID, err)
	}

	raw, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	m.index.Update(c.ID, func(x *Container) {
		cfg := proto.Clone(x.Config).(*runtime.ContainerConfig)
		if cfg.Linux == nil {
			cfg.Linux = &runtime.LinuxContainerConfig{}
		}
		cfg.Linux.Resources = r
		x.Config, x.Resources = cfg, raw
	})
	return m.persistStatus(ctx, c.ID)
}
