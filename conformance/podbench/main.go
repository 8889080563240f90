// Command podbench measures how long a runtime takes to start a pod with one
// container (RunPodSandbox + CreateContainer + StartContainer) over the CRI,
// for several runtimes in one run, and prints each one's figures and their
// ratio to the first. Teardown is done between samples and not timed.
//
//	podbench -n 20 -image registry.k8s.io/e2e-test-images/busybox:1.29-2 \
//	    peapod=unix:///run/peapod/peapod.sock containerd=unix:///run/containerd/containerd.sock
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	n := flag.Int("n", 20, "pods to start per runtime")
	img := flag.String("image", "registry.k8s.io/e2e-test-images/busybox:1.29-2", "container image")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: podbench [-n N] [-image REF] NAME=unix:///socket ...")
		os.Exit(2)
	}
	var base time.Duration
	fmt.Printf("%-22s %10s %10s %10s %8s\n", "runtime (pod+ctr start)", "p50", "p90", "max", "ratio")
	for i, arg := range flag.Args() {
		name, endpoint, ok := strings.Cut(arg, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "podbench: %q is not NAME=ENDPOINT\n", arg)
			os.Exit(2)
		}
		samples, err := measure(endpoint, *img, *n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "podbench: %s: %v\n", name, err)
			os.Exit(1)
		}
		slices.Sort(samples)
		p50, p90 := samples[len(samples)/2], samples[len(samples)*9/10]
		if i == 0 {
			base = p50
		}
		fmt.Printf("%-22s %10s %10s %10s %7.2fx\n", name, ms(p50), ms(p90), ms(samples[len(samples)-1]), float64(p50)/float64(base))
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func measure(endpoint, img string, n int) ([]time.Duration, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rt, is := runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := is.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: img}}); err != nil {
		return nil, fmt.Errorf("pulling %s: %w", img, err)
	}
	// One pod first, untimed, so that the pause image pull is not measured.
	var out []time.Duration
	for i := -1; i < n; i++ {
		pod := &runtime.PodSandboxConfig{
			Metadata: &runtime.PodSandboxMetadata{Name: fmt.Sprintf("podbench-%d", i), Namespace: "podbench", Uid: fmt.Sprintf("podbench-%d-%d", time.Now().UnixNano(), i)},
			Linux:    &runtime.LinuxPodSandboxConfig{},
		}
		ctr := &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "sleep"},
			Image:    &runtime.ImageSpec{Image: img},
			Command:  []string{"sleep", "3600"},
			Linux:    &runtime.LinuxContainerConfig{},
		}
		start := time.Now()
		p, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
		if err != nil {
			return nil, fmt.Errorf("RunPodSandbox: %w", err)
		}
		c, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.PodSandboxId, Config: ctr, SandboxConfig: pod})
		if err == nil {
			_, err = rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ContainerId})
		}
		took := time.Since(start)
		_, _ = rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.PodSandboxId})
		_, _ = rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.PodSandboxId})
		if err != nil {
			return nil, fmt.Errorf("starting the container: %w", err)
		}
		if i >= 0 {
			out = append(out, took)
		}
	}
	return out, nil
}
