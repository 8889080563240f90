package streaming

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	clientremotecommand "k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	clientexec "k8s.io/client-go/util/exec"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	streamhttp "k8s.io/streaming/pkg/httpstream"
	utilexec "k8s.io/utils/exec"
)

// fakeRuntime runs a few commands in-process. Attach is "cat".
//
//	echo WORDS...   WORDS on stdout
//	cat             stdin to stdout, until stdin ends
//	warn WORDS...   WORDS on stderr
//	exit N          exits with N
//	size            the first terminal size, as WxH, on stdout
//
// ended, if set, hears of each command's end.
type fakeRuntime struct {
	ended chan<- string
}

func (r fakeRuntime) Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error {
	if r.ended != nil {
		defer func() { r.ended <- cmd[0] }()
	}
	switch cmd[0] {
	case "echo":
		_, err := io.WriteString(stdout, strings.Join(cmd[1:], " "))
		return err
	case "cat":
		_, err := io.Copy(stdout, stdin)
		return err
	case "warn":
		_, err := io.WriteString(stderr, strings.Join(cmd[1:], " "))
		return err
	case "exit":
		code, _ := strconv.Atoi(cmd[1])
		return utilexec.CodeExitError{Err: fmt.Errorf("exited with %d", code), Code: code}
	case "size":
		select {
		case s := <-resize:
			_, err := fmt.Fprintf(stdout, "%dx%d", s.Width, s.Height)
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("no command %q", cmd[0])
}

func (r fakeRuntime) Attach(ctx context.Context, id string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error {
	return r.Exec(ctx, id, []string{"cat"}, stdin, stdout, stderr, tty, resize)
}

// NetNSPath: every pod is on the host's network.
func (fakeRuntime) NetNSPath(context.Context, string) (string, error) { return "", nil }

func startServer(t *testing.T) *Server {
	t.Helper()
	return startServerWith(t, fakeRuntime{})
}

func startServerWith(t *testing.T, r fakeRuntime) *Server {
	t.Helper()
	return startServerTLS(t, r, TLS{})
}

func startServerTLS(t *testing.T, r fakeRuntime, tlsFiles TLS) *Server {
	t.Helper()
	s, err := New("127.0.0.1:0", tlsFiles, r, r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

// transports are the clients' ways of streaming exec and attach: client-go's
// executors, as crictl and critest make them.
var transports = []struct {
	name string
	new  func(rawURL string) (clientremotecommand.Executor, error)
	// halfClose: the client can end stdin (all but the WebSocket v4,
	// which has no CLOSE signal).
	halfClose bool
}{
	{"spdy", func(rawURL string) (clientremotecommand.Executor, error) {
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, err
		}
		return clientremotecommand.NewSPDYExecutor(&rest.Config{}, http.MethodPost, u)
	}, true},
	{"websocket-v5", func(rawURL string) (clientremotecommand.Executor, error) {
		return clientremotecommand.NewWebSocketExecutor(&rest.Config{}, http.MethodGet, rawURL)
	}, true},
	{"websocket-v4", func(rawURL string) (clientremotecommand.Executor, error) {
		return clientremotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, http.MethodGet, rawURL, "v4.channel.k8s.io")
	}, false},
}

type sizes []clientremotecommand.TerminalSize

func (s *sizes) Next() *clientremotecommand.TerminalSize {
	if len(*s) == 0 {
		return nil
	}
	next := (*s)[0]
	*s = (*s)[1:]
	return &next
}

func TestExec(t *testing.T) {
	tests := []struct {
		name           string
		req            *runtime.ExecRequest
		stdin          string
		size           *clientremotecommand.TerminalSize
		needsHalfClose bool
		wantOut        string
		wantErr        string
		wantCode       int
	}{
		{
			name:    "stdout",
			req:     &runtime.ExecRequest{Cmd: []string{"echo", "hello", "world"}, Stdout: true},
			wantOut: "hello world",
		},
		{
			name:    "stdout and stderr",
			req:     &runtime.ExecRequest{Cmd: []string{"warn", "careful"}, Stdout: true, Stderr: true},
			wantErr: "careful",
		},
		{
			name:           "stdin until it ends",
			req:            &runtime.ExecRequest{Cmd: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true},
			stdin:          "line 1\nline 2\n",
			needsHalfClose: true,
			wantOut:        "line 1\nline 2\n",
		},
		{
			name:     "exit code",
			req:      &runtime.ExecRequest{Cmd: []string{"exit", "3"}, Stdout: true, Stderr: true},
			wantCode: 3,
		},
		{
			name:    "terminal size",
			req:     &runtime.ExecRequest{Cmd: []string{"size"}, Stdout: true, Tty: true},
			size:    &clientremotecommand.TerminalSize{Width: 132, Height: 43},
			wantOut: "132x43",
		},
	}
	s := startServer(t)
	for _, tr := range transports {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				if tt.needsHalfClose && !tr.halfClose {
					t.Skip("the transport cannot end stdin")
				}
				tt.req.ContainerId = "c1"
				resp, err := s.GetExec(tt.req)
				if err != nil {
					t.Fatal(err)
				}
				out, errOut, err := stream(t, tr.new, resp.Url, tt.req.Stdin, tt.stdin, tt.req.Stdout, tt.req.Stderr, tt.req.Tty, tt.size)
				if tt.wantCode != 0 {
					var exit clientexec.CodeExitError
					if !errors.As(err, &exit) || exit.ExitStatus() != tt.wantCode {
						t.Fatalf("err = %v, want exit code %d", err, tt.wantCode)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if out != tt.wantOut || errOut != tt.wantErr {
					t.Errorf("stdout %q, stderr %q; want %q, %q", out, errOut, tt.wantOut, tt.wantErr)
				}
			})
		}
	}
}

func TestAttach(t *testing.T) {
	s := startServer(t)
	for _, tr := range transports {
		if !tr.halfClose {
			continue
		}
		t.Run(tr.name, func(t *testing.T) {
			resp, err := s.GetAttach(&runtime.AttachRequest{ContainerId: "c1", Stdin: true, Stdout: true, Stderr: true})
			if err != nil {
				t.Fatal(err)
			}
			out, _, err := stream(t, tr.new, resp.Url, true, "attached\n", true, true, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if out != "attached\n" {
				t.Errorf("stdout %q, want %q", out, "attached\n")
			}
		})
	}
}

// stream runs one session and returns its stdout and stderr.
func stream(t *testing.T, newExecutor func(string) (clientremotecommand.Executor, error), rawURL string,
	stdin bool, in string, stdout, stderr, tty bool, size *clientremotecommand.TerminalSize,
) (string, string, error) {
	t.Helper()
	exec, err := newExecutor(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	opts := clientremotecommand.StreamOptions{Tty: tty}
	if stdin {
		opts.Stdin = strings.NewReader(in)
	}
	if stdout {
		opts.Stdout = &out
	}
	if stderr {
		opts.Stderr = &errOut
	}
	if size != nil {
		opts.TerminalSizeQueue = &sizes{*size}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = exec.StreamWithContext(ctx, opts)
	return out.String(), errOut.String(), err
}

// A session's URL is good for one session, whatever the transport, and an
// unknown one is refused before the WebSocket upgrade, as the library
// refuses it.
func TestSingleUse(t *testing.T) {
	s := startServer(t)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			resp, err := s.GetExec(&runtime.ExecRequest{ContainerId: "c1", Cmd: []string{"echo", "once"}, Stdout: true})
			if err != nil {
				t.Fatal(err)
			}
			if out, _, err := stream(t, tr.new, resp.Url, false, "", true, false, false, nil); err != nil || out != "once" {
				t.Fatalf("first session: stdout %q, err %v", out, err)
			}
			if _, _, err := stream(t, tr.new, resp.Url, false, "", true, false, false, nil); err == nil {
				t.Fatal("second session on the same URL: no error")
			}
		})
	}
}

// A v5 client that goes away mid-session ends the command's stdin, as an
// SPDY client going away does.
func TestClientGoesAway(t *testing.T) {
	ended := make(chan string, 1)
	s := startServerWith(t, fakeRuntime{ended: ended})
	for _, tr := range transports {
		if !tr.halfClose {
			continue
		}
		t.Run(tr.name, func(t *testing.T) {
			resp, err := s.GetExec(&runtime.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true})
			if err != nil {
				t.Fatal(err)
			}
			exec, err := tr.new(resp.Url)
			if err != nil {
				t.Fatal(err)
			}
			stdin, keepOpen := io.Pipe()
			defer keepOpen.Close()
			out := &notifyWriter{first: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			streamed := make(chan error, 1)
			go func() {
				streamed <- exec.StreamWithContext(ctx, clientremotecommand.StreamOptions{Stdin: stdin, Stdout: out})
			}()
			go func() { _, _ = io.WriteString(keepOpen, "x") }()
			select {
			case <-out.first: // the session is up
			case err := <-streamed:
				t.Fatalf("session ended early: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("no output")
			}
			cancel()
			<-streamed
			select {
			case <-ended:
			case <-time.After(10 * time.Second):
				t.Fatal("the command still runs after its client left")
			}
		})
	}
}

type notifyWriter struct {
	once  sync.Once
	first chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.first) })
	return len(p), nil
}

// A request the library refuses gets the library's answer, before any
// WebSocket upgrade.
func TestRefusedBeforeUpgrade(t *testing.T) {
	s := startServer(t)
	pf, err := s.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr().String()
	tests := []struct {
		name, url, protocol string
		want                int
	}{
		{"exec, unknown token", base + "/exec/nosuch?output=1", "v5.channel.k8s.io", http.StatusNotFound},
		{"exec, no streams named", base + "/exec/nosuch", "v5.channel.k8s.io", http.StatusBadRequest},
		{"attach, unknown token", base + "/attach/nosuch?output=1", "v5.channel.k8s.io", http.StatusNotFound},
		{"port-forward, unknown token", base + "/portforward/nosuch", "SPDY/3.1+portforward.k8s.io", http.StatusNotFound},
		{"port-forward, unknown protocol", pf.Url, "SPDY/3.1+v9.portforward.k8s.io", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			req.Header.Set("Sec-WebSocket-Protocol", tt.protocol)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestWithStreams(t *testing.T) {
	tests := []struct {
		name                       string
		stdin, stdout, stderr, tty bool
		want                       string
	}{
		{"stdout", false, true, false, false, "http://127.0.0.1:1/exec/tok?output=1"},
		{"all but tty", true, true, true, false, "http://127.0.0.1:1/exec/tok?error=1&input=1&output=1"},
		{"terminal", true, true, false, true, "http://127.0.0.1:1/exec/tok?input=1&output=1&tty=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withStreams("http://127.0.0.1:1/exec/tok", tt.stdin, tt.stdout, tt.stderr, tt.tty)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// echoServer answers each connection with what it reads, until the client
// half-closes.
func echoServer(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func TestPortForward(t *testing.T) {
	dialers := []struct {
		name string
		new  func(u *url.URL) (streamhttp.Dialer, error)
	}{
		{"spdy", func(u *url.URL) (streamhttp.Dialer, error) {
			rt, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
			if err != nil {
				return nil, err
			}
			return spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: rt}, http.MethodPost, u), nil
		}},
		{"spdy-over-websocket", func(u *url.URL) (streamhttp.Dialer, error) {
			return portforward.NewSPDYOverWebsocketDialerForStreaming(u, &rest.Config{})
		}},
	}
	s := startServer(t)
	port := echoServer(t)
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			resp, err := s.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: "p1", Port: []int32{port}})
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(resp.Url)
			if err != nil {
				t.Fatal(err)
			}
			dialer, err := d.new(u)
			if err != nil {
				t.Fatal(err)
			}
			stop, ready := make(chan struct{}), make(chan struct{})
			var logs bytes.Buffer
			pf, err := portforward.NewOnAddressesForStreaming(dialer, []string{"127.0.0.1"},
				[]string{fmt.Sprintf("0:%d", port)}, stop, ready, &syncWriter{w: &logs}, &syncWriter{w: &logs})
			if err != nil {
				t.Fatal(err)
			}
			forwarded := make(chan error, 1)
			go func() { forwarded <- pf.ForwardPorts() }()
			defer func() {
				close(stop)
				if err := <-forwarded; err != nil {
					t.Errorf("ForwardPorts: %v", err)
				}
			}()
			select {
			case <-ready:
			case err := <-forwarded:
				t.Fatalf("ForwardPorts: %v (%s)", err, logs.String())
			case <-time.After(20 * time.Second):
				t.Fatal("port forward not ready")
			}
			ports, err := pf.GetPorts()
			if err != nil {
				t.Fatal(err)
			}
			// Two connections in turn over one session.
			for i := range 2 {
				msg := fmt.Sprintf("ping %d", i)
				if got := roundTrip(t, ports[0].Local, msg); got != msg {
					t.Errorf("connection %d: got %q, want %q", i, got, msg)
				}
			}
		})
	}
}

func roundTrip(t *testing.T, localPort uint16, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", localPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(got)
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
