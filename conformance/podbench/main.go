// Command podbench measures, over the CRI, for several runtimes in one run:
//
//   - how long a runtime takes to start a pod with one container
//     (RunPodSandbox + CreateContainer + StartContainer); teardown is done
//     between samples and not timed;
//   - with -stats-containers N, how long ListContainerStats and
//     ListPodSandboxStats take while N containers run (in pods of 10), as
//     the kubelet calls them every few seconds.
//
// Each table gives every runtime's figures and their ratio to the first.
//
//	podbench -n 20 -stats-containers 100 \
//	    peapod=unix:///run/peapod/peapod.sock containerd=unix:///run/containerd/containerd.sock
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
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
	statsContainers := flag.Int("stats-containers", 0, "containers to run for the stats benchmark (0: no stats benchmark)")
	statsCalls := flag.Int("stats-calls", 50, "calls of each stats RPC to time")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: podbench [-n N] [-image REF] [-stats-containers N] NAME=unix:///socket ...")
		os.Exit(2)
	}
	defer func() {
		if *statsContainers > 0 {
			statsTable(flag.Args(), *img, *statsContainers, *statsCalls)
		}
	}()
	var base time.Duration
	var phases strings.Builder
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
		total := make([]time.Duration, len(samples))
		for j, s := range samples {
			total[j] = s.run + s.create + s.start
		}
		slices.Sort(total)
		p50, p90 := total[len(total)/2], total[len(total)*9/10]
		if i == 0 {
			base = p50
		}
		fmt.Printf("%-22s %10s %10s %10s %7.2fx\n", name, ms(p50), ms(p90), ms(total[len(total)-1]), float64(p50)/float64(base))
		fmt.Fprintf(&phases, "%-22s %16s %16s %16s\n", name,
			ms(median(samples, func(s sample) time.Duration { return s.run })),
			ms(median(samples, func(s sample) time.Duration { return s.create })),
			ms(median(samples, func(s sample) time.Duration { return s.start })))
	}
	fmt.Printf("\n%-22s %16s %16s %16s\n%s", "p50 of each call", "RunPodSandbox", "CreateContainer", "StartContainer", phases.String())
}

// sample is one pod start, call by call.
type sample struct{ run, create, start time.Duration }

func median(samples []sample, of func(sample) time.Duration) time.Duration {
	d := make([]time.Duration, len(samples))
	for i, s := range samples {
		d[i] = of(s)
	}
	slices.Sort(d)
	return d[len(d)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func measure(endpoint, img string, n int) ([]sample, error) {
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
	var out []sample
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
		var took sample
		t0 := time.Now()
		p, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
		if err != nil {
			return nil, fmt.Errorf("RunPodSandbox: %w", err)
		}
		t1 := time.Now()
		c, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.PodSandboxId, Config: ctr, SandboxConfig: pod})
		t2 := time.Now()
		if err == nil {
			_, err = rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ContainerId})
		}
		took.run, took.create, took.start = t1.Sub(t0), t2.Sub(t1), time.Since(t2)
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

// statsTable runs the stats benchmark on every runtime and prints its table.
func statsTable(runtimes []string, img string, containers, calls int) {
	fmt.Printf("\n%-22s %-20s %10s %10s %10s %8s\n", fmt.Sprintf("runtime (%d ctrs)", containers), "call", "p50", "p90", "max", "ratio")
	base := map[string]time.Duration{}
	for _, arg := range runtimes {
		name, endpoint, _ := strings.Cut(arg, "=")
		res, err := measureStats(endpoint, img, containers, calls)
		if err != nil {
			fmt.Fprintf(os.Stderr, "podbench: %s: stats: %v\n", name, err)
			os.Exit(1)
		}
		for _, call := range []string{"ListContainerStats", "ListPodSandboxStats"} {
			samples := res[call]
			slices.Sort(samples)
			p50, p90 := samples[len(samples)/2], samples[len(samples)*9/10]
			if _, ok := base[call]; !ok {
				base[call] = p50
			}
			fmt.Printf("%-22s %-20s %10s %10s %10s %7.2fx\n", name, call, ms(p50), ms(p90), ms(samples[len(samples)-1]), float64(p50)/float64(base[call]))
		}
	}
}

// measureStats starts containers (in pods of 10), times the stats calls,
// checks each answer covers every container, and removes the pods.
func measureStats(endpoint, img string, containers, calls int) (map[string][]time.Duration, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rt, is := runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if _, err := is.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: img}}); err != nil {
		return nil, fmt.Errorf("pulling %s: %w", img, err)
	}
	var pods []string
	// Each pod has a cgroup parent of its own, as the kubelet gives
	// (containerd's CRI cannot measure a pod without one); the runtimes
	// create them, the kubelet's part is to remove them.
	stamp := time.Now().UnixNano()
	parent := fmt.Sprintf("/podbench-%d", stamp)
	defer func() {
		for _, p := range pods {
			_, _ = rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p})
			_, _ = rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p})
		}
		removeCgroups(parent)
	}()
	const perPod = 10
	for started := 0; started < containers; {
		pod := &runtime.PodSandboxConfig{
			Metadata: &runtime.PodSandboxMetadata{Name: fmt.Sprintf("statsbench-%d", len(pods)), Namespace: "podbench",
				Uid: fmt.Sprintf("statsbench-%d-%d", stamp, len(pods))},
			Linux: &runtime.LinuxPodSandboxConfig{CgroupParent: fmt.Sprintf("%s/pod%d", parent, len(pods))},
		}
		p, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
		if err != nil {
			return nil, fmt.Errorf("RunPodSandbox: %w", err)
		}
		pods = append(pods, p.PodSandboxId)
		for i := 0; i < perPod && started < containers; i++ {
			ctr := &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: fmt.Sprintf("sleep-%d", i)},
				Image:    &runtime.ImageSpec{Image: img},
				Command:  []string{"sleep", "3600"},
				Linux:    &runtime.LinuxContainerConfig{},
			}
			c, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.PodSandboxId, Config: ctr, SandboxConfig: pod})
			if err == nil {
				_, err = rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ContainerId})
			}
			if err != nil {
				return nil, fmt.Errorf("starting container %d: %w", started, err)
			}
			started++
		}
	}
	out := map[string][]time.Duration{}
	for i := -1; i < calls; i++ { // the first call of each, untimed, warms up
		start := time.Now()
		cs, err := rt.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{})
		took := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("ListContainerStats: %w", err)
		}
		if got := len(cs.GetStats()); got < containers {
			return nil, fmt.Errorf("ListContainerStats covers %d containers, want %d", got, containers)
		}
		if i >= 0 {
			out["ListContainerStats"] = append(out["ListContainerStats"], took)
		}
		start = time.Now()
		ps, err := rt.ListPodSandboxStats(ctx, &runtime.ListPodSandboxStatsRequest{})
		took = time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("ListPodSandboxStats: %w", err)
		}
		if got := len(ps.GetStats()); got < len(pods) {
			return nil, fmt.Errorf("ListPodSandboxStats covers %d pods, want %d", got, len(pods))
		}
		if i >= 0 {
			out["ListPodSandboxStats"] = append(out["ListPodSandboxStats"], took)
		}
	}
	return out, nil
}

// removeCgroups removes the (by now empty) cgroup directories under parent
// in every hierarchy, deepest first.
func removeCgroups(parent string) {
	var dirs []string
	for _, pattern := range []string{"*/%s/*", "%s/*", "*/%s", "%s"} {
		matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", fmt.Sprintf(pattern, parent)))
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				dirs = append(dirs, m)
			}
		}
	}
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			fmt.Fprintf(os.Stderr, "podbench: removing cgroup %s: %v\n", d, err)
		}
	}
}
