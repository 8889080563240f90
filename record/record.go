// Package record keeps the records peapod writes about its sandboxes and
// containers on their containerd containers, as container extensions. They
// are the source of truth a restarted peapod rebuilds its indexes from.
// A record type must be registered with typeurl.Register by its package.
package record

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
)

// Save writes rec as the extension key of the containerd container id.
func Save(ctx context.Context, c *client.Client, id, key string, rec any) error {
	ctr, err := c.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("loading container %s: %w", id, err)
	}
	err = ctr.Update(ctx, func(_ context.Context, _ *client.Client, cc *containers.Container) error {
		ext, err := typeurl.MarshalAny(rec)
		if err != nil {
			return err
		}
		if cc.Extensions == nil {
			cc.Extensions = map[string]typeurl.Any{}
		}
		cc.Extensions[key] = ext
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording state of %s: %w", id, err)
	}
	return nil
}

// Load reads the extension key of a containerd container into rec.
func Load(c containers.Container, key string, rec any) error {
	ext, ok := c.Extensions[key]
	if !ok {
		return fmt.Errorf("container %s has no %s record", c.ID, key)
	}
	if err := json.Unmarshal(ext.GetValue(), rec); err != nil {
		return fmt.Errorf("decoding %s record of %s: %w", key, c.ID, err)
	}
	return nil
}
