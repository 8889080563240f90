// Package server translates the CRI (k8s.io/cri-api runtime.v1) into calls on
// the packages that own each concept. Handlers validate their input, delegate,
// and return wrapped errors; the interceptors in instrument.go turn those into
// gRPC codes in one place. RPCs not built yet answer codes.Unimplemented
// through the embedded Unimplemented*Server types.
package server

import (
	"context"
	"time"

	"github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/config"
	"github.com/peapod-cri/peapod/container"
	"github.com/peapod-cri/peapod/eventbus"
	"github.com/peapod-cri/peapod/image"
	"github.com/peapod-cri/peapod/network"
	"github.com/peapod-cri/peapod/runtimehandler"
	"github.com/peapod-cri/peapod/sandbox"
)

// Containerd is what the server needs of the containerd client.
// *client.Client implements it.
type Containerd interface {
	// Version asks the daemon for its version; an answer means it is reachable.
	Version(ctx context.Context) (client.Version, error)
}

// Network is what the server needs of the network package.
type Network interface {
	Status() network.Status
	SetPodCIDRs(cidrs []string) error
}

// Images is what the server needs of the image package.
type Images interface {
	Pull(ctx context.Context, name string, auth *image.Auth) (string, error)
	Get(ctx context.Context, name string) (image.Image, error)
	List(ctx context.Context) ([]image.Image, error)
	Remove(ctx context.Context, name string) error
	Pinned(img image.Image) bool
	FsUsage(ctx context.Context) (image.FsUsage, error)
}

// Sandboxes is what the server needs of the sandbox package.
type Sandboxes interface {
	Run(ctx context.Context, cfg *runtime.PodSandboxConfig, handler string) (string, error)
	Stop(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	Retire(ctx context.Context, id string) error
	Get(ctx context.Context, id string) (sandbox.Sandbox, error)
	List(ctx context.Context) ([]sandbox.Sandbox, error)
	NetworkStats(sb *sandbox.Sandbox) ([]sandbox.InterfaceStats, error)
}

// Containers is what the server needs of the container package.
type Containers interface {
	Create(ctx context.Context, sandboxID string, cfg *runtime.ContainerConfig) (string, error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Remove(ctx context.Context, id string) error
	Get(ctx context.Context, id string) (container.Container, error)
	List(ctx context.Context) ([]container.Container, error)
	InSandbox(ctx context.Context, sandboxID string) ([]container.Container, error)
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (*container.ExecResult, error)
	ReopenLog(ctx context.Context, id string) error
	Stats(ctx context.Context, c container.Container) (container.Stats, error)
	UpdateResources(ctx context.Context, id string, r *runtime.LinuxContainerResources) error
	Checkpoint(ctx context.Context, id, location string, status *runtime.ContainerStatus) error
}

// Backends are the packages the Service delegates to.
type Backends struct {
	Containerd Containerd
	Network    Network
	Images     Images
	Sandboxes  Sandboxes
	Containers Containers
	Streaming  Streaming
	Events     *eventbus.Bus
	Handlers   *runtimehandler.Set
}

// Service implements the CRI RuntimeService and ImageService.
type Service struct {
	runtime.UnimplementedRuntimeServiceServer
	runtime.UnimplementedImageServiceServer

	config     *config.Config
	health     *containerdHealth
	network    Network
	images     Images
	sandboxes  Sandboxes
	containers Containers
	streaming  Streaming
	events     *eventbus.Bus
	handlers   *runtimehandler.Set
}

// New returns a Service for the given configuration and backends.
func New(cfg *config.Config, b Backends) *Service {
	return &Service{
		config:     cfg,
		health:     &containerdHealth{containerd: b.Containerd},
		network:    b.Network,
		images:     b.Images,
		sandboxes:  b.Sandboxes,
		containers: b.Containers,
		streaming:  b.Streaming,
		events:     b.Events,
		handlers:   b.Handlers,
	}
}

// Start runs the Service's background work until ctx is done.
func (s *Service) Start(ctx context.Context) {
	go s.health.run(ctx)
}

// Register adds the CRI services to a gRPC server.
func (s *Service) Register(g *grpc.Server) {
	runtime.RegisterRuntimeServiceServer(g, s)
	runtime.RegisterImageServiceServer(g, s)
}
