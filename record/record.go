// Package record keeps the records peapod writes about its sandboxes and
// containers on their containerd containers, as container extensions. They
// are the source of truth a restarted peapod rebuilds its indexes from.
//
// Each object has two records: its metadata, written once with the
// containerd container, and its status, which Save replaces alone (a
// field-path update of that one extension), so that a status write can
// never undo another field's change, such as a resource update's spec.
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

// Save writes rec as the extension key of the containerd container id,
// replacing that extension only, in one round trip.
func Save(ctx context.Context, c *client.Client, id, key string, rec any) error {
	ext, err := typeurl.MarshalAny(rec)
	if err != nil {
		return fmt.Errorf("encoding %s record of %s: %w", key, id, err)
	}
	_, err = c.ContainerService().Update(ctx,
		containers.Container{ID: id, Extensions: map[string]typeurl.Any{key: ext}}, "extensions."+key)
	if err != nil {
		return fmt.Errorf("recording %s of %s: %w", key, id, err)
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

// LoadIfPresent reads the extension key into rec when the container has
// it, and reports whether it had.
func LoadIfPresent(c containers.Container, key string, rec any) (bool, error) {
	if _, ok := c.Extensions[key]; !ok {
		return false, nil
	}
	return true, Load(c, key, rec)
}
