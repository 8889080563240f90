//go:build integration

package integration

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ctrdProxy stands in front of a containerd: it passes every gRPC call on
// as it is, but fails the calls of the methods a test arms, to make
// containerd fail at a chosen point.
type ctrdProxy struct {
	sock string
	mu   sync.Mutex
	// fail holds, per full method name, how many more calls fail, and
	// failed how many did.
	fail   map[string]int
	failed map[string]int
	// answer holds, per full method name, an answer the next calls get
	// instead of containerd's, and how many more.
	answer map[string]cannedAnswer
	// hold holds, per full method name, the next call to hold (holdNext).
	hold    map[string]*heldCall
	stopped chan struct{}
}

// heldCall is a call the proxy holds until the test passes it on.
type heldCall struct {
	arrived  chan struct{} // closed when the call has reached the proxy
	passOn   chan struct{} // closed by pass
	answered chan error    // containerd's answer, once passed on
}

// pass passes the held call on to containerd.
func (h *heldCall) pass() { close(h.passOn) }

type cannedAnswer struct {
	msg []byte
	n   int
}

// startCtrdProxy serves, on a socket of its own, a proxy of the containerd
// at upstream.
func startCtrdProxy(t *testing.T, upstream string) *ctrdProxy {
	t.Helper()
	p := &ctrdProxy{sock: filepath.Join(tempDir(t), "proxy.sock"), fail: map[string]int{}, failed: map[string]int{},
		answer: map[string]cannedAnswer{}, hold: map[string]*heldCall{}, stopped: make(chan struct{})}
	up, err := grpc.NewClient("unix://"+upstream, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", p.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, in grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(in)
		if p.failing(method) {
			return status.Errorf(codes.Unavailable, "%s failed by the test's proxy", method)
		}
		if msg, ok := p.canned(method); ok {
			var req []byte
			if err := in.RecvMsg(&req); err != nil {
				return err
			}
			return in.SendMsg(&msg)
		}
		if h := p.held(method); h != nil {
			return p.forwardHeld(in, up, method, h)
		}
		return forward(in, up, method)
	}))
	go srv.Serve(l)
	t.Cleanup(func() {
		close(p.stopped)
		srv.Stop()
		up.Close()
	})
	return p
}

// failNext makes the next n calls of method fail with Unavailable.
func (p *ctrdProxy) failNext(method string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail[method] = n
}

// answerNext answers the next n calls of method with msg.
func (p *ctrdProxy) answerNext(method string, n int, msg proto.Message) {
	b, err := proto.Marshal(msg)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer[method] = cannedAnswer{msg: b, n: n}
}

func (p *ctrdProxy) canned(method string) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.answer[method]
	if a.n == 0 {
		return nil, false
	}
	a.n--
	p.answer[method] = a
	return a.msg, true
}

// holdNext holds the next call of method (a unary one) until the test
// passes it on: then it goes to containerd whatever became of its caller
// meanwhile, as a call containerd had received before its caller died.
func (p *ctrdProxy) holdNext(method string) *heldCall {
	h := &heldCall{arrived: make(chan struct{}), passOn: make(chan struct{}), answered: make(chan error, 1)}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold[method] = h
	return h
}

// holdDuring holds the next call of method while call (the CRI call
// named what) runs, and returns once the held call has reached the proxy,
// with the channel call's answer comes on. call answering first, or no
// call of method within podTimeout, fails the test.
func (p *ctrdProxy) holdDuring(t *testing.T, method, what string, call func() error) (*heldCall, <-chan error) {
	t.Helper()
	h := p.holdNext(method)
	answered := make(chan error, 1)
	go func() { answered <- call() }()
	select {
	case <-h.arrived:
	case err := <-answered:
		t.Fatalf("%s answered (%v) before its %s reached containerd", what, err, method)
	case <-time.After(podTimeout):
		t.Fatalf("%s made no %s", what, method)
	}
	return h, answered
}

func (p *ctrdProxy) held(method string) *heldCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.hold[method]
	delete(p.hold, method)
	return h
}

// forwardHeld receives the call's request, waits for the test to pass it
// on, and then makes it to containerd on a context of its own.
func (p *ctrdProxy) forwardHeld(in grpc.ServerStream, up *grpc.ClientConn, method string, h *heldCall) error {
	md, _ := metadata.FromIncomingContext(in.Context())
	var req []byte
	if err := in.RecvMsg(&req); err != nil {
		return err
	}
	close(h.arrived)
	select {
	case <-h.passOn:
	case <-p.stopped:
		return status.Error(codes.Unavailable, "the test's proxy stopped")
	}
	var resp []byte
	err := up.Invoke(metadata.NewOutgoingContext(context.Background(), md), method, &req, &resp, grpc.ForceCodec(rawCodec{}))
	h.answered <- err
	if err != nil {
		return err
	}
	return in.SendMsg(&resp)
}

// failedCalls is how many calls of method the proxy failed.
func (p *ctrdProxy) failedCalls(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed[method]
}

func (p *ctrdProxy) failing(method string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail[method] == 0 {
		return false
	}
	p.fail[method]--
	p.failed[method]++
	return true
}

// forward passes the call on in to the upstream connection and its
// answers back, message by message.
func forward(in grpc.ServerStream, up *grpc.ClientConn, method string) error {
	ctx, cancel := context.WithCancel(in.Context())
	defer cancel()
	md, _ := metadata.FromIncomingContext(ctx)
	out, err := up.NewStream(metadata.NewOutgoingContext(ctx, md),
		&grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	go func() {
		for {
			var m []byte
			if err := in.RecvMsg(&m); err != nil {
				out.CloseSend()
				return
			}
			if err := out.SendMsg(&m); err != nil {
				return
			}
		}
	}()
	if h, err := out.Header(); err == nil {
		in.SendHeader(h)
	}
	for {
		var m []byte
		if err := out.RecvMsg(&m); errors.Is(err, io.EOF) {
			in.SetTrailer(out.Trailer())
			return nil
		} else if err != nil {
			in.SetTrailer(out.Trailer())
			return err
		}
		if err := in.SendMsg(&m); err != nil {
			return err
		}
	}
}

// rawCodec passes messages through as the bytes they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }
