package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/config"
	"github.com/peapod-cri/peapod/container"
	"github.com/peapod-cri/peapod/eventbus"
	"github.com/peapod-cri/peapod/hostcaps"
	"github.com/peapod-cri/peapod/image"
	"github.com/peapod-cri/peapod/metrics"
	"github.com/peapod-cri/peapod/monitor"
	"github.com/peapod-cri/peapod/network"
	"github.com/peapod-cri/peapod/oplease"
	"github.com/peapod-cri/peapod/runtimehandler"
	"github.com/peapod-cri/peapod/sandbox"
	"github.com/peapod-cri/peapod/server"
	"github.com/peapod-cri/peapod/shimreaper"
	"github.com/peapod-cri/peapod/streaming"
	"github.com/peapod-cri/peapod/version"
)

const (
	// maxMsgSize matches the kubelet's CRI client limit.
	maxMsgSize = 16 << 20
	// shutdownGrace bounds how long in-flight CRI calls may run after
	// SIGTERM before they are cut off.
	shutdownGrace = 10 * time.Second
	// shimSweepInterval is how often shims containerd lost are looked for
	// (see shimreaper); one is ended at its second sighting.
	shimSweepInterval = 20 * time.Second
)

// serve runs the daemon until SIGTERM or SIGINT. Stopping peapod never
// touches containers: they belong to containerd and keep running.
func serve(cfg *config.Config) error {
	setVerbosity(cfg.Verbosity)
	for _, dir := range []string{cfg.Root, cfg.State} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}

	// The client connects lazily: peapod starts (and reports
	// RuntimeReady=false) while containerd is down, and reconnects by itself.
	ctrd, err := client.New(cfg.ContainerdAddress, client.WithDefaultNamespace(cfg.ContainerdNamespace))
	if err != nil {
		return fmt.Errorf("containerd client for %s: %w", cfg.ContainerdAddress, err)
	}
	defer ctrd.Close()

	m := metrics.New()
	images := image.New(ctrd, image.Config{
		RegistryConfigPath:  cfg.RegistryConfigPath,
		PullProgressTimeout: time.Duration(cfg.PullProgressTimeout),
		PinnedImages:        []string{cfg.PauseImage, sandbox.BuiltinPauseRepository},
	})
	net := network.NewManager(cfg.CNIConfDir, cfg.CNIBinDir, filepath.Join(cfg.State, "cni"))
	events := &eventbus.Bus{}
	ioBinary, err := findIOBinary(cfg.IOBinary)
	if err != nil {
		return err
	}
	handlers := runtimehandler.Load(context.Background(), cfg, &runtimehandler.Prober{IDMapPath: cfg.Root})
	host := hostcaps.Probe(cfg.RestrictOOMScoreAdj)
	sandboxes := sandbox.New(ctrd, images, net, sandbox.Config{
		PauseImage: cfg.PauseImage, PauseBinary: ioBinary, RootDir: cfg.Root, StateDir: cfg.State, Events: events, Handlers: handlers,
		Host: host,
	})
	containers := container.New(ctrd, images, sandboxes, container.Config{
		StateDir: cfg.State, IOBinary: ioBinary, Namespace: cfg.ContainerdNamespace, ContainerdAddress: cfg.ContainerdAddress,
		Events: events, Handlers: handlers, Host: host,
	})
	stream, err := streaming.New(cfg.StreamingAddress, streaming.TLS{
		CertFile: cfg.StreamingTLSCert, KeyFile: cfg.StreamingTLSKey, ClientCAFile: cfg.StreamingTLSCA,
	}, containers, sandboxes)
	if err != nil {
		return err
	}
	rec := newRecovery()
	svc := server.New(cfg, server.Backends{
		Containerd: ctrd,
		Network:    net,
		Images:     images,
		Sandboxes:  sandboxes,
		Containers: containers,
		Streaming:  stream,
		Events:     events,
		Handlers:   handlers,
	})
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(server.UnaryInterceptor(m, rec)),
		grpc.ChainStreamInterceptor(server.StreamInterceptor(m, rec)),
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
	)
	svc.Register(g)

	l, release, err := listenCRI(cfg.Listen)
	if err != nil {
		return err
	}
	defer release()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	svc.Start(ctx)
	// State is rebuilt from containerd before any CRI call but Version and
	// Status is served, then kept current from containerd's events.
	go func() {
		if rec.run(ctx, []recoveryStep{
			// First: a shim an exec left waiting holds every task query
			// touching its pod (see container.OpenLeftExecs).
			{"exec fifos left", containers.OpenLeftExecs},
			{"abandoned leases", func(ctx context.Context) error { return oplease.EndAbandoned(ctx, ctrd.LeasesService()) }},
			{"images", images.Recover},
			{"pod sandboxes", sandboxes.Recover},
			{"containers", containers.Recover},
		}) {
			reaper := &shimreaper.Reaper{ProcRoot: "/proc", Namespace: cfg.ContainerdNamespace, Address: cfg.ContainerdAddress}
			go reaper.Run(ctx, shimSweepInterval)
			monitor.Run(ctx, ctrd, cfg.ContainerdNamespace, sandboxes, containers)
		}
	}()
	go stream.Serve(ctx)
	if cfg.MetricsAddress != "" {
		addr, err := m.Serve(ctx, cfg.MetricsAddress)
		if err != nil {
			return fmt.Errorf("metrics endpoint %s: %w", cfg.MetricsAddress, err)
		}
		klog.InfoS("Serving metrics", "url", fmt.Sprintf("http://%s/metrics", addr))
	}

	served := make(chan error, 1)
	go func() { served <- g.Serve(l) }()
	klog.InfoS("peapod is serving the CRI", "version", version.Version, "socket", cfg.Listen, "streaming", stream.Addr().String(),
		"containerd", cfg.ContainerdAddress, "namespace", cfg.ContainerdNamespace)

	select {
	case err := <-served:
		return fmt.Errorf("serving %s: %w", cfg.Listen, err)
	case <-ctx.Done():
	}
	klog.InfoS("Shutting down: no new calls, finishing in-flight ones", "grace", shutdownGrace)
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		klog.InfoS("In-flight calls did not finish in time; cutting them off")
		g.Stop()
	}
	klog.InfoS("peapod stopped")
	return nil
}

// setVerbosity applies the configured -v to klog, which keeps it in a flag.
func setVerbosity(v int) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", strconv.Itoa(v))
}

// ioBinaryName is the program the IO server and the built-in pause run,
// shipped beside peapod.
const ioBinaryName = "peapod-io"

// findIOBinary returns the configured IO binary, else peapod-io next to
// peapod's own binary, else on the PATH. It must be there at start-up:
// without it no container could start.
func findIOBinary(configured string) (string, error) {
	candidates := []string{configured}
	if configured == "" {
		candidates = nil
		if self, err := os.Executable(); err == nil {
			candidates = append(candidates, filepath.Join(filepath.Dir(self), ioBinaryName))
		}
		if p, err := exec.LookPath(ioBinaryName); err == nil {
			candidates = append(candidates, p)
		}
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			klog.InfoS("Container IO binary", "path", c)
			return c, nil
		}
	}
	if configured != "" {
		return "", fmt.Errorf("io-binary %s is not an executable file", configured)
	}
	return "", fmt.Errorf("%s not found beside peapod or on the PATH (set io-binary): containers' logs and the built-in pause need it", ioBinaryName)
}
