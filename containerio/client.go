package containerio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrServerDown is returned by a Client whose server does not answer.
var ErrServerDown = errors.New("the IO server is not running")

// ErrNotRegistered is returned for a container the server does not serve.
var ErrNotRegistered = errors.New("the container is not registered with the IO server")

// Client talks to the IO server of a directory.
type Client struct{ Dir string }

// Add registers a container's output with the server, which reads it from
// then on. Adding a registered container again is a no-op.
func (c Client) Add(ctx context.Context, spec Spec) error {
	_, err := c.call(ctx, request{Op: "add", Spec: &spec})
	return err
}

// Remove stops serving a container; an unknown one is fine.
func (c Client) Remove(ctx context.Context, id string) error {
	_, err := c.call(ctx, request{Op: "remove", ID: id})
	return err
}

// Reopen makes the server reopen a container's log file, after the kubelet
// rotated it.
func (c Client) Reopen(ctx context.Context, id string) error {
	_, err := c.call(ctx, request{Op: "reopen", ID: id})
	return err
}

// Drain waits, up to timeout, until the container's output is all written
// (its last task's output ended). It returns at once for an unknown one.
func (c Client) Drain(ctx context.Context, id string, timeout time.Duration) error {
	_, err := c.call(ctx, request{Op: "drain", ID: id, Timeout: timeout})
	return err
}

// Has reports whether the server serves a container.
func (c Client) Has(ctx context.Context, id string) (bool, error) {
	resp, err := c.call(ctx, request{Op: "has", ID: id})
	return resp.Has, err
}

// List returns the IDs of the containers the server serves.
func (c Client) List(ctx context.Context) ([]string, error) {
	resp, err := c.call(ctx, request{Op: "list"})
	return resp.IDs, err
}

// Ping checks that the server answers.
func (c Client) Ping(ctx context.Context) error {
	_, err := c.call(ctx, request{Op: "ping"})
	return err
}

// callTimeout bounds a request, beyond a drain's own wait.
const callTimeout = 10 * time.Second

func (c Client) call(ctx context.Context, req request) (response, error) {
	var resp response
	ctx, cancel := context.WithTimeout(ctx, callTimeout+req.Timeout)
	defer cancel()
	var conn net.Conn
	err := viaShortPath(controlSocket(c.Dir), func(p string) error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, "unix", p)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return resp, fmt.Errorf("IO server %s: %w", c.Dir, ctx.Err())
		}
		return resp, fmt.Errorf("%w: %v", ErrServerDown, err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(&req); err != nil {
		return resp, fmt.Errorf("IO server request %s: %w", req.Op, err)
	}
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return resp, fmt.Errorf("IO server request %s: %w", req.Op, err)
	}
	switch {
	case resp.NotFound:
		return resp, fmt.Errorf("%w: %s", ErrNotRegistered, resp.Error)
	case resp.Error != "":
		return resp, fmt.Errorf("IO server: %s", resp.Error)
	}
	return resp, nil
}
