// Package streaming serves exec, attach and port-forward sessions for the
// CRI's Exec, Attach and PortForward calls, on an HTTP server built on
// k8s.io/cri-streaming (SPDY and WebSocket). The CRI call hands out a
// single-use, expiring URL; the client then streams over it.
package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	criStreaming "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
)

// TerminalSize is a terminal resize from the client.
type TerminalSize = remotecommand.TerminalSize

// Containers is what streaming needs of the container package.
type Containers interface {
	Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error
	Attach(ctx context.Context, id string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error
}

// Sandboxes is what streaming needs of the sandbox package: the path of a
// pod's network namespace ("" for a host-network pod).
type Sandboxes interface {
	NetNSPath(ctx context.Context, id string) (string, error)
}

// Server is the streaming server.
type Server struct {
	srv      criStreaming.Server
	listener net.Listener
}

// New listens on addr (host:port; port 0 picks a free one) and returns a
// Server whose URLs name the address actually bound.
func New(addr string, containers Containers, sandboxes Sandboxes) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("streaming server on %s: %w", addr, err)
	}
	cfg := criStreaming.DefaultConfig
	cfg.Addr = l.Addr().String()
	cfg.BaseURL = &url.URL{Scheme: "http", Host: l.Addr().String()}
	srv, err := criStreaming.NewServer(cfg, &adapter{containers: containers, sandboxes: sandboxes})
	if err != nil {
		l.Close()
		return nil, err
	}
	return &Server{srv: srv, listener: l}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Serve serves until ctx is done.
func (s *Server) Serve(ctx context.Context) {
	hs := &http.Server{Handler: s.srv, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		_ = hs.Close()
	}()
	if err := hs.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		klog.ErrorS(err, "Streaming server stopped")
	}
}

// GetExec returns the URL of an exec session.
func (s *Server) GetExec(r *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	return s.srv.GetExec(r)
}

// GetAttach returns the URL of an attach session.
func (s *Server) GetAttach(r *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	return s.srv.GetAttach(r)
}

// GetPortForward returns the URL of a port-forward session.
func (s *Server) GetPortForward(r *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	return s.srv.GetPortForward(r)
}

// adapter is the cri-streaming Runtime: it runs what the sessions ask for.
type adapter struct {
	containers Containers
	sandboxes  Sandboxes
}

func (a *adapter) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return a.containers.Exec(ctx, id, cmd, in, out, errw, tty, resize)
}

func (a *adapter) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return a.containers.Attach(ctx, id, in, out, errw, tty, resize)
}

func (a *adapter) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	path, err := a.sandboxes.NetNSPath(ctx, podID)
	if err != nil {
		return err
	}
	return portForward(ctx, path, port, stream)
}
