package server

import (
	"context"
	"go/token"
	"net"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/config"
	"github.com/peapod-cri/peapod/network"
	"github.com/peapod-cri/peapod/runtimehandler"
)

// fakeContainerd answers Version with a fixed result.
type fakeContainerd struct {
	version client.Version
	err     error

	mu    sync.Mutex
	calls int
}

func (f *fakeContainerd) Version(context.Context) (client.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.version, f.err
}

func (f *fakeContainerd) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// fakeNetwork reports a fixed network status.
type fakeNetwork struct {
	status network.Status
	cidrs  *[]string // where SetPodCIDRs records, if set
}

func (f fakeNetwork) Status() network.Status { return f.status }

func (f fakeNetwork) SetPodCIDRs(cidrs []string) error {
	if f.cidrs != nil {
		*f.cidrs = cidrs
	}
	return nil
}

// call is one observed RPC.
type call struct {
	method string
	code   codes.Code
}

// recorder is an Observer that remembers every call.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) ObserveRPC(method string, code codes.Code, d time.Duration) {
	if d < 0 {
		panic("negative duration")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{method, code})
}

func (r *recorder) last() call {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		return call{}
	}
	return r.calls[len(r.calls)-1]
}

func testConfig() *config.Config {
	cfg := config.Default()
	cfg.ContainerdAddress = "/run/test/containerd.sock"
	return cfg
}

func newTestService(ctrd Containerd, net Network) *Service {
	if ctrd == nil {
		ctrd = &fakeContainerd{version: client.Version{Version: "v9.9.9", Revision: "abc"}}
	}
	if net == nil {
		net = fakeNetwork{status: network.Status{Ready: true, Network: "podnet", File: "/etc/cni/net.d/10-podnet.conflist"}}
	}
	handlers := runtimehandler.NewSet("runc", &runtimehandler.Handler{Name: "runc",
		Runtime: config.Runtime{Type: config.RuncShim}, Features: runtimehandler.Features{RecursiveReadOnlyMounts: true}})
	return New(testConfig(), Backends{Containerd: ctrd, Network: net, Handlers: handlers})
}

// serveBufconn serves register's services over an in-process connection,
// with peapod's interceptors installed as in cmd/peapod, and returns a client
// connection to it.
func serveBufconn(t *testing.T, obs Observer, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	l := bufconn.Listen(1 << 20)
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(UnaryInterceptor(obs, nil)),
		grpc.ChainStreamInterceptor(StreamInterceptor(obs, nil)),
	)
	register(g)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func callContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestEveryRPCImplemented: every method of the CRI services is peapod's
// own, none the generated Unimplemented stub (a method promoted from the
// embedded stub is a compiler-made wrapper, with no source file).
func TestEveryRPCImplemented(t *testing.T) {
	svc := reflect.TypeFor[*Service]()
	for _, api := range []reflect.Type{reflect.TypeFor[runtime.RuntimeServiceServer](), reflect.TypeFor[runtime.ImageServiceServer]()} {
		for i := range api.NumMethod() {
			name := api.Method(i).Name
			if !token.IsExported(name) {
				continue // mustEmbed…: gRPC's forward-compatibility marker
			}
			m, ok := svc.MethodByName(name)
			if !ok {
				t.Errorf("%s: no method", name)
				continue
			}
			pc := m.Func.Pointer()
			if file, _ := goruntime.FuncForPC(pc).FileLine(pc); !strings.HasPrefix(filepath.Base(filepath.Dir(file)), "server") {
				t.Errorf("%s is not implemented (it comes from %s)", name, file)
			}
		}
	}
}

// Requests that name nothing are InvalidArgument, before any backend is asked.
func TestEmptyRequestsAreInvalid(t *testing.T) {
	s := newTestService(nil, nil)
	ctx := callContext(t)
	for name, call := range map[string]func() error{
		"UpdatePodSandboxResources": func() error {
			_, err := s.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{})
			return err
		},
		"CheckpointContainer": func() error {
			_, err := s.CheckpointContainer(ctx, &runtime.CheckpointContainerRequest{})
			return err
		},
		"CheckpointPod": func() error {
			_, err := s.CheckpointPod(ctx, &runtime.CheckpointPodRequest{})
			return err
		},
		"RestorePod": func() error {
			_, err := s.RestorePod(ctx, &runtime.RestorePodRequest{})
			return err
		},
		"UpdateContainerResources": func() error {
			_, err := s.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{})
			return err
		},
	} {
		if err := call(); status.Code(toGRPC(err)) != codes.InvalidArgument {
			t.Errorf("%s with an empty request: %v, want InvalidArgument", name, err)
		}
	}
}

func TestUpdateRuntimeConfig(t *testing.T) {
	cases := []struct {
		cidr    string
		want    []string // nil: SetPodCIDRs not called
		invalid bool
	}{
		{cidr: "10.244.1.0/24", want: []string{"10.244.1.0/24"}},
		{cidr: "10.244.1.7/24", want: []string{"10.244.1.0/24"}}, // the network, as CNI wants it
		{cidr: "10.244.1.0/24,fd00:10:244:1::/64", want: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}},
		{cidr: ""},
		{cidr: "10.244.1.0", invalid: true},
		{cidr: "10.244.1.0/24,nonsense", invalid: true},
	}
	for _, tc := range cases {
		var got []string
		s := newTestService(nil, fakeNetwork{status: network.Status{Ready: true}, cidrs: &got})
		_, err := s.UpdateRuntimeConfig(callContext(t), &runtime.UpdateRuntimeConfigRequest{
			RuntimeConfig: &runtime.RuntimeConfig{NetworkConfig: &runtime.NetworkConfig{PodCidr: tc.cidr}},
		})
		if tc.invalid {
			if status.Code(toGRPC(err)) != codes.InvalidArgument {
				t.Errorf("%q: %v, want InvalidArgument", tc.cidr, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: set %q, %v; want %q", tc.cidr, got, err, tc.want)
		}
	}
}

func TestSendChunks(t *testing.T) {
	for _, n := range []int{0, 1, streamChunk - 1, streamChunk, streamChunk + 1, 3*streamChunk + 7} {
		items := make([]int, n)
		for i := range items {
			items[i] = i
		}
		var got []int
		messages := 0
		err := sendChunks(items, func(c []int) error {
			if len(c) == 0 || len(c) > streamChunk {
				t.Errorf("%d items: a message of %d", n, len(c))
			}
			messages++
			got = append(got, c...)
			return nil
		})
		if err != nil || !slices.Equal(got, items) || messages != (n+streamChunk-1)/streamChunk {
			t.Errorf("%d items: sent %d in %d messages, %v", n, len(got), messages, err)
		}
	}
}
