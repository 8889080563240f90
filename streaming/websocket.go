package streaming

// k8s.io/cri-streaming v0.37 serves SPDY and the WebSocket channel protocols
// up to v4, but not what WebSocket clients of today speak (client-go's, and so
// crictl's --transport websocket and critest's -websocket-*):
//
//   - exec and attach ask for "v5.channel.k8s.io" only: v4 plus a CLOSE
//     signal (channel 255) that half-closes a stream, so stdin can end. The
//     library's handshake offers no v5 and refuses with 403.
//   - port-forward tunnels SPDY through the WebSocket ("SPDY/3.1+" before
//     the SPDY protocol name); the library's WebSocket port-forward speaks
//     only the channel protocol, and refuses with 403 too.
//
// translator serves both by turning them into SPDY sessions of the library
// itself, in process, as the Kubernetes API server does for the kubelet: the
// library still checks the single-use token, runs the session and writes its
// exit status; wsstream (k8s.io/streaming) speaks v5 to the client, and a
// v5 session's SPDY side is a client connection of k8s.io/streaming over a
// pipe. Everything else goes to the library untouched.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/websocket"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// The v5 channel numbers, those of v4 (stdin, stdout, stderr, the error
// stream with the exit status, terminal resizes).
const (
	channelStdin = iota
	channelStdout
	channelStderr
	channelError
	channelResize
)

// translator is the streaming server's HTTP handler: next is the library's.
type translator struct {
	next        http.Handler
	idleTimeout time.Duration
}

func (t *translator) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch kind := path.Base(path.Dir(req.URL.Path)); {
	case (kind == "exec" || kind == "attach") && wsstream.IsWebSocketRequestWithStreamCloseProtocol(req):
		t.serveV5(w, req)
	case kind == "portforward" && wsstream.IsWebSocketRequestWithTunnelingProtocol(req):
		t.serveTunnel(w, req)
	default:
		t.next.ServeHTTP(w, req)
	}
}

// serveV5 serves an exec or attach session whose client speaks the v5
// channel protocol, as a v4 SPDY session of the library. Which streams the
// session has is in the URL's query (see withStreams): the SPDY side must
// open exactly those.
func (t *translator) serveV5(w http.ResponseWriter, req *http.Request) {
	opts, err := remotecommand.NewOptions(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	h, _, upgraded := t.delegate(spdyRequest(req.WithContext(ctx), remotecommand.StreamProtocolV4Name))
	if !upgraded {
		h.relay(w)
		return
	}

	ws := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		remotecommand.StreamProtocolV5Name: {Binary: true, Channels: v5Channels(opts)},
	})
	ws.SetIdleTimeout(t.idleTimeout)
	_, channels, err := ws.Open(w, req)
	if err != nil {
		h.conn <- nil // the library gives up on its side
		klog.V(2).InfoS("Streaming: WebSocket v5 upgrade failed", "path", req.URL.Path, "err", err)
		return
	}
	defer ws.Close()
	local, remote := net.Pipe()
	h.conn <- remote
	spdyConn, err := spdy.NewClientConnection(local)
	if err != nil {
		local.Close()
		klog.ErrorS(err, "Streaming: SPDY side of a WebSocket v5 session")
		return
	}
	defer spdyConn.Close()
	if err := bridgeV5(channels, spdyConn, opts); err != nil {
		klog.ErrorS(err, "Streaming: WebSocket v5 session", "path", req.URL.Path)
	}
}

// v5Channels are the client's channels: those of streams the session does
// not have are ignored, as the library does for v4.
func v5Channels(opts *remotecommand.Options) []wsstream.ChannelType {
	pick := func(want bool, t wsstream.ChannelType) wsstream.ChannelType {
		if want {
			return t
		}
		return wsstream.IgnoreChannel
	}
	return []wsstream.ChannelType{
		channelStdin:  pick(opts.Stdin, wsstream.ReadChannel),
		channelStdout: pick(opts.Stdout, wsstream.WriteChannel),
		channelStderr: pick(opts.Stderr, wsstream.WriteChannel),
		channelError:  wsstream.WriteChannel,
		channelResize: pick(opts.TTY, wsstream.ReadChannel),
	}
}

// bridgeV5 opens the session's SPDY streams, in the order client-go opens
// them, and copies between them and the client's channels until the library
// has closed the session: the output streams and the exit status are then
// all on the WebSocket, which the caller closes after them. A client that
// goes away ends the session as an SPDY client going away would.
func bridgeV5(channels []io.ReadWriteCloser, conn httpstream.Connection, opts *remotecommand.Options) error {
	type pair struct {
		kind    string
		channel int
		in      bool // from the client to the library
	}
	pairs := []pair{{remotecommand.StreamTypeError, channelError, false}}
	if opts.Stdin {
		pairs = append(pairs, pair{remotecommand.StreamTypeStdin, channelStdin, true})
	}
	if opts.Stdout {
		pairs = append(pairs, pair{remotecommand.StreamTypeStdout, channelStdout, false})
	}
	if opts.Stderr {
		pairs = append(pairs, pair{remotecommand.StreamTypeStderr, channelStderr, false})
	}
	if opts.TTY {
		pairs = append(pairs, pair{remotecommand.StreamTypeResize, channelResize, true})
	}
	streams := make([]httpstream.Stream, len(pairs))
	for i, p := range pairs {
		header := http.Header{}
		header.Set(remotecommand.StreamType, p.kind)
		var err error
		if streams[i], err = conn.CreateStream(header); err != nil {
			return fmt.Errorf("open the %s stream: %w", p.kind, err)
		}
	}
	announceOpen(channels, opts)

	abort := sync.OnceFunc(func() { _ = conn.Close() })
	var outputs sync.WaitGroup
	for i, p := range pairs {
		stream, channel := streams[i], channels[p.channel]
		if p.in {
			// The client's end of a stream (v5's CLOSE, or its leaving)
			// half-closes it toward the library: stdin reaches EOF.
			go func() {
				_, _ = io.Copy(stream, channel)
				_ = stream.Close()
			}()
			continue
		}
		outputs.Go(func() {
			if _, err := io.Copy(channel, stream); err != nil {
				klog.V(4).InfoS("Streaming: WebSocket v5 session output stopped", "stream", p.kind, "err", err)
				abort()
			}
		})
	}
	outputs.Wait()
	return nil
}

// announceOpen tells the client the session is open, as the library does
// for v4: an empty message on the first channel it reads output from.
func announceOpen(channels []io.ReadWriteCloser, opts *remotecommand.Options) {
	first := channelError
	switch {
	case opts.Stdout:
		first = channelStdout
	case opts.Stderr:
		first = channelStderr
	}
	_, _ = channels[first].Write([]byte{})
}

// serveTunnel serves a port-forward session whose client tunnels SPDY
// through a WebSocket: the WebSocket, as a byte stream, is the connection
// the library's SPDY port-forward runs on.
func (t *translator) serveTunnel(w http.ResponseWriter, req *http.Request) {
	var offered []string
	for _, p := range websocketProtocols(req) {
		if inner, ok := strings.CutPrefix(p, portforward.WebsocketsSPDYTunnelingPrefix); ok {
			offered = append(offered, inner)
		}
	}
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	h, done, upgraded := t.delegate(spdyRequest(req.WithContext(ctx), offered...))
	if !upgraded {
		h.relay(w)
		return
	}
	chosen := portforward.WebsocketsSPDYTunnelingPrefix + h.header.Get(httpstream.HeaderProtocolVersion)
	handedOver := false
	websocket.Server{
		Handshake: func(cfg *websocket.Config, _ *http.Request) error {
			if !slices.Contains(cfg.Protocol, chosen) {
				return fmt.Errorf("subprotocol %q not offered", chosen)
			}
			cfg.Protocol = []string{chosen}
			return nil
		},
		Handler: func(ws *websocket.Conn) {
			ws.PayloadType = websocket.BinaryFrame
			handedOver = true
			h.conn <- ws
			<-done // the session runs on ws until the library returns
		},
	}.ServeHTTP(w, req)
	if !handedOver {
		h.conn <- nil
		klog.V(2).InfoS("Streaming: WebSocket port-forward upgrade failed", "path", req.URL.Path)
	}
}

// websocketProtocols are the subprotocols the client offers.
func websocketProtocols(req *http.Request) []string {
	var ps []string
	for _, v := range req.Header.Values("Sec-Websocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				ps = append(ps, p)
			}
		}
	}
	return ps
}

// spdyRequest is req as an SPDY upgrade asking for protocols.
func spdyRequest(req *http.Request, protocols ...string) *http.Request {
	r := req.Clone(req.Context())
	r.Body = http.NoBody
	for h := range r.Header {
		if strings.HasPrefix(h, "Sec-Websocket-") {
			r.Header.Del(h)
		}
	}
	r.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	r.Header.Set(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
	r.Header.Del(httpstream.HeaderProtocolVersion)
	for _, p := range protocols {
		r.Header.Add(httpstream.HeaderProtocolVersion, p)
	}
	return r
}

// delegate has the library serve r on a handoff. It returns once the
// library either asks for the connection (upgraded: the caller must then
// send one, or nil, on h.conn) or has answered without upgrading (an unknown
// token, a protocol it refuses: h holds the answer). done is closed when the
// library's handler returns.
func (t *translator) delegate(r *http.Request) (h *handoff, done <-chan struct{}, upgraded bool) {
	h = &handoff{header: http.Header{}, upgrade: make(chan struct{}), conn: make(chan net.Conn)}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				klog.ErrorS(fmt.Errorf("%v", p), "Streaming: panic serving a translated session", "path", r.URL.Path)
			}
		}()
		t.next.ServeHTTP(h, r)
	}()
	select {
	case <-h.upgrade:
		return h, finished, true
	case <-finished:
		return h, finished, false
	}
}

// handoff is the http.ResponseWriter the library answers a translated
// request on. Before an upgrade it only records the answer; its Hijack
// waits for the connection the translator hands over.
type handoff struct {
	header  http.Header
	code    int
	body    bytes.Buffer
	upgrade chan struct{} // closed by Hijack
	conn    chan net.Conn // the connection Hijack returns; nil: none
}

var errNoConnection = errors.New("the WebSocket client was not upgraded")

func (h *handoff) Header() http.Header { return h.header }

func (h *handoff) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}

func (h *handoff) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return h.body.Write(b)
}

func (h *handoff) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	close(h.upgrade)
	c := <-h.conn
	if c == nil {
		return nil, nil, errNoConnection
	}
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), nil
}

// relay gives the client the answer the library gave without upgrading.
func (h *handoff) relay(w http.ResponseWriter) {
	for k, v := range h.header {
		w.Header()[k] = v
	}
	if h.code == 0 {
		h.code = http.StatusInternalServerError
	}
	w.WriteHeader(h.code)
	_, _ = w.Write(h.body.Bytes())
}
