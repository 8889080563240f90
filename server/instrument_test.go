package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// scripted is the Service with RemovePodSandbox and GetContainerEvents
// replaced by handlers whose outcome the request chooses, so the
// interceptors can be tested over a real gRPC server.
type scripted struct {
	*Service
}

func (scripted) RemovePodSandbox(ctx context.Context, req *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	id := req.PodSandboxId
	switch id {
	case "ok":
		return &runtime.RemovePodSandboxResponse{}, nil
	case "panic":
		panic("boom")
	case "panic-error":
		panic(errors.New("nil map"))
	case "not-found":
		return nil, fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
	case "invalid":
		return nil, fmt.Errorf("sandbox %q: bad id: %w", id, errdefs.ErrInvalidArgument)
	case "exists":
		return nil, fmt.Errorf("sandbox %q: %w", id, errdefs.ErrAlreadyExists)
	case "deep":
		return nil, fmt.Errorf("removing sandbox %q: %w", id, fmt.Errorf("container c1: %w", errdefs.ErrNotFound))
	case "grpc-status":
		return nil, fmt.Errorf("sandbox %q: %w", id, status.Error(codes.FailedPrecondition, "still running"))
	case "deadline":
		return nil, fmt.Errorf("sandbox %q: %w", id, context.DeadlineExceeded)
	default:
		return nil, fmt.Errorf("sandbox %q: disk on fire", id)
	}
}

func (scripted) GetContainerEvents(*runtime.GetEventsRequest, grpc.ServerStreamingServer[runtime.ContainerEventResponse]) error {
	panic("stream boom")
}

func (s scripted) Register(g *grpc.Server) {
	runtime.RegisterRuntimeServiceServer(g, s)
	runtime.RegisterImageServiceServer(g, s)
}

func TestInterceptor(t *testing.T) {
	obs := &recorder{}
	conn := serveBufconn(t, obs, scripted{newTestService(nil, nil)}.Register)
	rt := runtime.NewRuntimeServiceClient(conn)
	ctx := callContext(t)

	cases := []struct {
		id      string
		code    codes.Code
		message []string // substrings of the status message
	}{
		{"ok", codes.OK, nil},
		{"panic", codes.Internal, []string{"RemovePodSandbox", "boom"}},
		{"panic-error", codes.Internal, []string{"RemovePodSandbox", "nil map"}},
		{"not-found", codes.NotFound, []string{`sandbox "not-found"`}},
		{"invalid", codes.InvalidArgument, []string{`sandbox "invalid": bad id`}},
		{"exists", codes.AlreadyExists, []string{`sandbox "exists"`}},
		{"deep", codes.NotFound, []string{`removing sandbox "deep": container c1`}},
		{"grpc-status", codes.FailedPrecondition, []string{"still running"}},
		{"deadline", codes.DeadlineExceeded, []string{`sandbox "deadline"`}},
		{"plain", codes.Unknown, []string{`sandbox "plain": disk on fire`}},
	}
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) {
			_, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: tc.id})
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("RemovePodSandbox(%s) = %v, want code %s", tc.id, err, tc.code)
			}
			for _, w := range tc.message {
				if !strings.Contains(st.Message(), w) {
					t.Errorf("message %q does not contain %q", st.Message(), w)
				}
			}
			if got, want := obs.last(), (call{"RemovePodSandbox", tc.code}); got != want {
				t.Errorf("observed %+v, want %+v", got, want)
			}
			// Whatever the last call did, the server still serves.
			if _, err := rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
				t.Fatalf("Version after %s: %v", tc.id, err)
			}
			if got, want := obs.last(), (call{"Version", codes.OK}); got != want {
				t.Errorf("observed %+v, want %+v", got, want)
			}
		})
	}
}

func TestStreamInterceptorRecoversPanic(t *testing.T) {
	obs := &recorder{}
	conn := serveBufconn(t, obs, scripted{newTestService(nil, nil)}.Register)
	rt := runtime.NewRuntimeServiceClient(conn)
	ctx := callContext(t)

	stream, err := rt.GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "stream boom") {
		t.Fatalf("GetContainerEvents = %v, want Internal naming the panic", err)
	}
	if got, want := obs.last(), (call{"GetContainerEvents", codes.Internal}); got != want {
		t.Errorf("observed %+v, want %+v", got, want)
	}
	if _, err := rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
		t.Fatalf("Version after a panicking stream: %v", err)
	}
}

// Without an Observer the interceptor still converts errors.
func TestInterceptorNilObserver(t *testing.T) {
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/StopPodSandbox"}
	_, err := UnaryInterceptor(nil, nil)(context.Background(), nil, info, func(context.Context, any) (any, error) {
		return nil, fmt.Errorf("sandbox x: %w", errdefs.ErrNotFound)
	})
	if status.Code(err) != codes.NotFound {
		t.Errorf("err = %v, want NotFound", err)
	}
	_, err = UnaryInterceptor(nil, nil)(context.Background(), nil, info, func(context.Context, any) (any, error) { panic("x") })
	if status.Code(err) != codes.Internal {
		t.Errorf("err = %v, want Internal", err)
	}
}
