// Package streaming serves exec, attach and port-forward sessions for the
// CRI's Exec, Attach and PortForward calls, on an HTTP server built on
// k8s.io/cri-streaming (SPDY and WebSocket), with the WebSocket protocols it
// lacks translated to its SPDY (websocket.go). The CRI call hands out a
// single-use, expiring URL; the client then streams over it.
package streaming

import (
	"context"
	"crypto/tls"
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
	handler  http.Handler
	listener net.Listener
}

// New listens on addr (host:port; port 0 picks a free one), with TLS when
// t is enabled, and returns a Server whose URLs name the address actually
// bound.
func New(addr string, t TLS, containers Containers, sandboxes Sandboxes) (*Server, error) {
	scheme := "http"
	var tlsConfig *tls.Config
	if t.Enabled() {
		var err error
		if tlsConfig, err = t.config(); err != nil {
			return nil, err
		}
		scheme = "https"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("streaming server on %s: %w", addr, err)
	}
	cfg := criStreaming.DefaultConfig
	cfg.Addr = l.Addr().String()
	cfg.BaseURL = &url.URL{Scheme: scheme, Host: l.Addr().String()}
	srv, err := criStreaming.NewServer(cfg, &adapter{containers: containers, sandboxes: sandboxes})
	if err != nil {
		l.Close()
		return nil, err
	}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	return &Server{
		srv:      srv,
		handler:  &translator{next: srv, idleTimeout: cfg.StreamIdleTimeout},
		listener: l,
	}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Serve serves until ctx is done.
func (s *Server) Serve(ctx context.Context) {
	hs := &http.Server{Handler: s.handler, ReadHeaderTimeout: 30 * time.Second}
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
	resp, err := s.srv.GetExec(r)
	if err != nil {
		return nil, err
	}
	if resp.Url, err = withStreams(resp.Url, r.GetStdin(), r.GetStdout(), r.GetStderr(), r.GetTty()); err != nil {
		return nil, err
	}
	return resp, nil
}

// GetAttach returns the URL of an attach session.
func (s *Server) GetAttach(r *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	resp, err := s.srv.GetAttach(r)
	if err != nil {
		return nil, err
	}
	if resp.Url, err = withStreams(resp.Url, r.GetStdin(), r.GetStdout(), r.GetStderr(), r.GetTty()); err != nil {
		return nil, err
	}
	return resp, nil
}

// withStreams names in a session's URL the streams it has, with the query
// parameters of the kubelet's own exec URLs (input, output, error, tty),
// which remotecommand.NewOptions reads: a WebSocket v5 session, translated
// to SPDY, must open the streams the library expects. The library's own
// routes ignore the query.
func withStreams(rawURL string, stdin, stdout, stderr, tty bool) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("streaming URL %q: %w", rawURL, err)
	}
	q := u.Query()
	for param, on := range map[string]bool{
		remotecommand.ExecStdinParam:  stdin,
		remotecommand.ExecStdoutParam: stdout,
		remotecommand.ExecStderrParam: stderr,
		remotecommand.ExecTTYParam:    tty,
	} {
		if on {
			q.Set(param, "1")
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
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
