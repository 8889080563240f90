package streaming

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/containerd/containerd/v2/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
)

// portForward connects stream to port on the pod's loopback: the socket is
// made inside the pod's network namespace (a socket stays in the namespace
// it was created in), so no tool in the pod or on the host is needed. An
// empty netnsPath means the host's network (a host-network pod).
func portForward(ctx context.Context, netnsPath string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	var conn net.Conn
	dial := func() error {
		var d net.Dialer
		var err error
		// IPv4 first: many servers listen only there; then IPv6.
		for _, host := range []string{"127.0.0.1", "::1"} {
			if conn, err = d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(port)))); err == nil {
				return nil
			}
		}
		return err
	}
	var err error
	if netnsPath == "" {
		err = dial()
	} else {
		err = netns.LoadNetNS(netnsPath).Do(func(cnins.NetNS) error { return dial() })
	}
	if err != nil {
		return fmt.Errorf("port-forward to port %d: %w", port, err)
	}
	defer conn.Close()

	// The client's side ends with a half-close; the session ends when the
	// pod's side is done answering.
	go func() {
		_, _ = io.Copy(conn, stream)
		closeWrite(conn)
	}()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(stream, conn)
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	return err
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
