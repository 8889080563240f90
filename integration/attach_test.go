//go:build integration

package integration

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// attachTimeout bounds the wait for an attach session's output or end.
const attachTimeout = 15 * time.Second

// attachSession is a streaming attach session over SPDY (protocol
// v4.channel.k8s.io), made as kubectl and crictl make one.
type attachSession struct {
	t              *testing.T
	conn           httpstream.Connection
	stdin, resize  httpstream.Stream // nil when not asked for
	stdout, stderr *syncBuffer
	ended          chan struct{} // closed when the server ended the session
	status         string        // the error stream, once ended
}

// attach asks peapod for an attach URL and opens the session.
func attach(t *testing.T, rt runtime.RuntimeServiceClient, req *runtime.AttachRequest) *attachSession {
	t.Helper()
	resp, err := rt.Attach(callCtx(t), req)
	if err != nil {
		t.Fatalf("Attach(%+v): %v", req, err)
	}
	return openSession(t, resp.Url, nil, req)
}

// streams are the streams a session asks for: an AttachRequest or an
// ExecRequest.
type streams interface {
	GetStdin() bool
	GetStdout() bool
	GetStderr() bool
	GetTty() bool
}

// openSession opens an attach or exec session on a streaming URL, over TLS
// with tlsConfig if the URL is https.
func openSession(t *testing.T, rawURL string, tlsConfig *tls.Config, req streams) *attachSession {
	t.Helper()
	tr, err := spdy.NewRoundTripper(tlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequest(http.MethodPost, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set(httpstream.HeaderProtocolVersion, "v4.channel.k8s.io")
	hresp, err := tr.RoundTrip(hreq)
	if err != nil {
		t.Fatalf("streaming URL %s: %v", rawURL, err)
	}
	conn, err := tr.NewConnection(hresp)
	if err != nil {
		t.Fatalf("streaming URL %s: %v", rawURL, err)
	}
	s := &attachSession{t: t, conn: conn, stdout: &syncBuffer{}, stderr: &syncBuffer{}, ended: make(chan struct{})}
	t.Cleanup(func() { conn.Close() })
	stream := func(typ string) httpstream.Stream {
		h := http.Header{}
		h.Set("streamType", typ)
		st, err := conn.CreateStream(h)
		if err != nil {
			t.Fatalf("creating the %s stream: %v", typ, err)
		}
		return st
	}
	errStream := stream("error")
	if req.GetStdin() {
		s.stdin = stream("stdin")
	}
	var copies []chan struct{}
	for _, o := range []struct {
		asked bool
		typ   string
		buf   *syncBuffer
	}{{req.GetStdout(), "stdout", s.stdout}, {req.GetStderr(), "stderr", s.stderr}} {
		if !o.asked {
			continue
		}
		st := stream(o.typ)
		done := make(chan struct{})
		copies = append(copies, done)
		go func() {
			_, _ = io.Copy(o.buf, st)
			close(done)
		}()
	}
	if req.GetTty() {
		s.resize = stream("resize")
	}
	go func() {
		b, _ := io.ReadAll(errStream)
		for _, done := range copies {
			<-done
		}
		s.status = string(b)
		close(s.ended)
	}()
	return s
}

func (s *attachSession) send(text string) {
	s.t.Helper()
	if _, err := io.WriteString(s.stdin, text); err != nil {
		s.t.Fatalf("writing %q to the attach stdin: %v", text, err)
	}
}

func (s *attachSession) setSize(width, height uint16) {
	s.t.Helper()
	b, _ := json.Marshal(map[string]uint16{"Width": width, "Height": height})
	if _, err := s.resize.Write(b); err != nil {
		s.t.Fatalf("resizing: %v", err)
	}
}

// expect waits until out holds want.
func (s *attachSession) expect(name string, out *syncBuffer, want string) {
	s.t.Helper()
	deadline := time.Now().Add(attachTimeout)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			s.t.Fatalf("attach %s: no %q after %s; got %q", name, want, attachTimeout, out.String())
		}
		select {
		case <-s.ended:
			if !strings.Contains(out.String(), want) {
				s.t.Fatalf("attach session ended (status %s) without %q on %s; got %q", s.status, want, name, out.String())
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// detach closes the client's stdin and waits for the session to end with
// success.
func (s *attachSession) detach() {
	s.t.Helper()
	// The error is not worth checking: peapod may end the session, and the
	// connection, on the FIN before spdystream has finished writing it.
	_ = s.stdin.Close()
	s.waitSuccess()
}

func (s *attachSession) waitSuccess() {
	s.t.Helper()
	select {
	case <-s.ended:
	case <-time.After(attachTimeout):
		s.t.Fatalf("attach session did not end within %s", attachTimeout)
	}
	var st struct{ Status string }
	if err := json.Unmarshal([]byte(s.status), &st); err != nil || st.Status != "Success" {
		s.t.Fatalf("attach session ended with status %q, want Success", s.status)
	}
}

// Attach reaches a container's stdio: a shell without a terminal (stdin in,
// stdout and stderr out), a shell on a terminal (with resizes), output only,
// and stdin-once; and it still does after peapod restarted, for containers
// the earlier peapod started. The CRI log is written all along.
func TestAttach(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("attach")
	sbID := runPod(t, rt, cfg)

	shellCfg := busybox("shell", "exec sh")
	shellCfg.Stdin = true
	shell := startContainer(t, rt, sbID, cfg, shellCfg)
	termCfg := busybox("term", "exec sh")
	termCfg.Stdin, termCfg.Tty = true, true
	term := startContainer(t, rt, sbID, cfg, termCfg)
	ticker := startContainer(t, rt, sbID, cfg, busybox("ticker",
		`i=0; while true; do echo "tick $i"; echo "tock $i" >&2; i=$((i+1)); sleep 0.2; done`))
	onceCfg := busybox("once", "exec sh")
	onceCfg.Stdin, onceCfg.StdinOnce = true, true
	once := startContainer(t, rt, sbID, cfg, onceCfg)
	noLogCfg := busybox("nolog", "exec sh")
	noLogCfg.Stdin, noLogCfg.LogPath = true, ""
	noLog := startContainer(t, rt, sbID, cfg, noLogCfg)
	ids := []string{shell, term, ticker, once, noLog}

	attachAll := func(phase string) {
		t.Helper()
		for _, id := range []string{shell, noLog} {
			s := attach(t, rt, &runtime.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
			s.send("echo hello-" + phase + "\n")
			s.expect("stdout", s.stdout, "hello-"+phase+"\n")
			s.send("echo oops-" + phase + " >&2\n")
			s.expect("stderr", s.stderr, "oops-"+phase+"\n")
			if strings.Contains(s.stdout.String(), "oops") || strings.Contains(s.stderr.String(), "hello") {
				t.Errorf("streams mixed up: stdout %q, stderr %q", s.stdout.String(), s.stderr.String())
			}
			s.detach() // no stdin-once: the container's stdin stays open
		}

		s := attach(t, rt, &runtime.AttachRequest{ContainerId: term, Stdin: true, Stdout: true, Tty: true})
		s.setSize(100, 40)
		s.send("echo tty-$((6*7))-" + phase + "\n")
		s.expect("terminal", s.stdout, "tty-42-"+phase)
		s.send("stty size\n")
		s.expect("terminal", s.stdout, "40 100")
		s.detach()

		s = attach(t, rt, &runtime.AttachRequest{ContainerId: ticker, Stdout: true, Stderr: true})
		s.expect("stdout", s.stdout, "tick ")
		s.expect("stderr", s.stderr, "tock ")
		s.conn.Close() // the client goes away

		for _, id := range ids {
			if st := containerStatus(t, rt, id).Status; st.State != runtime.ContainerState_CONTAINER_RUNNING {
				t.Fatalf("container %s after the %s-restart attaches: %v", st.Metadata.Name, phase, st)
			}
		}
	}

	attachAll("before")
	e.d.signal(syscall.SIGKILL)
	e.d.wait(5 * time.Second)
	rt, _ = e.serve()
	attachAll("after")

	// The log got what attach saw.
	lines, err := readLog(filepath.Join(cfg.LogDirectory, "shell.log"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.stream+" "+l.tag+" "+l.msg)
	}
	for _, want := range []string{"stdout F hello-before", "stderr F oops-before", "stdout F hello-after", "stderr F oops-after"} {
		if !slices.Contains(got, want) {
			t.Errorf("shell.log lacks %q: %q", want, got)
		}
	}

	// Stdin-once: the end of the session's stdin is the end of the
	// container's, and the session lasts until the container exits.
	s := attach(t, rt, &runtime.AttachRequest{ContainerId: once, Stdin: true, Stdout: true, Stderr: true})
	s.send("echo bye\n")
	s.expect("stdout", s.stdout, "bye\n")
	s.detach()
	eventually(t, 10*time.Second, "the stdin-once container exits", func() error {
		st := containerStatus(t, rt, once).Status
		if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 {
			return fmt.Errorf("state %s, exit code %d", st.State, st.ExitCode)
		}
		return nil
	})

	ctx := callCtx(t)
	for _, tc := range []struct {
		what string
		req  *runtime.AttachRequest
		code codes.Code
	}{
		{"an unknown container", &runtime.AttachRequest{ContainerId: "0123456789abcdef", Stdout: true}, codes.NotFound},
		{"an exited container", &runtime.AttachRequest{ContainerId: once, Stdout: true}, codes.FailedPrecondition},
		{"no stream", &runtime.AttachRequest{ContainerId: shell}, codes.InvalidArgument},
		{"no tty to a terminal", &runtime.AttachRequest{ContainerId: term, Stdin: true, Stdout: true}, codes.InvalidArgument},
		{"a tty to no terminal", &runtime.AttachRequest{ContainerId: shell, Stdout: true, Tty: true}, codes.InvalidArgument},
	} {
		_, err := rt.Attach(ctx, tc.req)
		wantCode(t, "Attach to "+tc.what, err, tc.code)
	}

	// Nothing is left of the containers' IO once the pod is gone.
	if _, err := rt.StopPodSandbox(podCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := rt.RemovePodSandbox(podCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	eventually(t, 10*time.Second, "nothing of the pod is left", func() error {
		if dirs, _ := os.ReadDir(filepath.Join(e.state(), "containers")); len(dirs) > 0 {
			return fmt.Errorf("container state directories left: %v", dirs)
		}
		return e.leftovers(sbID, ids...)
	})
}

// An exec whose process exits while its client still sends stdin leaves no
// goroutine of peapod's behind (the stdin copy blocked forever on a pipe
// nobody read any more): peapod's goroutine count, from its metrics, comes
// back to where it was after many such sessions.
func TestExecStdinAfterExitLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	e.config = fmt.Sprintf("metrics-address = %q\n", addr)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("exec-stdin")
	c := startContainer(t, rt, runPod(t, rt, cfg), cfg, busybox("app", "sleep 1000"))
	// A connection of its own for each scrape, closed after it: a kept-alive
	// one would be counted among peapod's goroutines.
	scraper := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	goroutines := func() int {
		t.Helper()
		resp, err := scraper.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return int(n)
			}
		}
		t.Fatal("no go_goroutines in /metrics")
		return 0
	}
	session := func() {
		req := &runtime.ExecRequest{ContainerId: c, Cmd: []string{"true"}, Stdin: true, Stdout: true, Stderr: true}
		resp, err := rt.Exec(callCtx(t), req)
		if err != nil {
			t.Fatalf("Exec: %v", err)
		}
		s := openSession(t, resp.Url, nil, req)
		// More stdin than any pipe holds, after the process is gone.
		chunk := strings.Repeat("x", 64<<10)
		for range 8 {
			if _, err := io.WriteString(s.stdin, chunk); err != nil {
				break
			}
		}
		select {
		case <-s.ended:
		case <-time.After(attachTimeout):
			t.Fatal("the exec session did not end")
		}
		s.conn.Close()
	}
	session() // warm up: the streaming server's own goroutines
	before := goroutines()
	const n = 15
	for range n {
		session()
	}
	var after int
	eventually(t, 10*time.Second, "peapod's goroutines come back", func() error {
		if after = goroutines(); after > before {
			return fmt.Errorf("%d goroutines after %d exec sessions, %d before", after, n, before)
		}
		return nil
	})
	t.Logf("goroutines: %d before, %d after %d sessions", before, after, n)
}
