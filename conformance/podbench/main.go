// Command podbench measures a CRI runtime side by side with a reference CRI
// runtime, over the CRI, and prints every figure with its ratio to the
// reference (runtime / reference: below 1.00x is faster or lighter).
//
//	podbench [flags] NAME=unix:///path/to/socket ... REFERENCE=unix:///path/to/socket
//
// The first runtime is the one measured, the last one the reference. Each
// measurement runs in -rounds rounds; every round measures every runtime
// once, in the given order in even rounds and in the reverse order in odd
// ones, and each figure printed is the median over rounds of that round's
// figure, since the machine is small and noisy. The sections, each switched
// off by setting its flag to 0:
//
//  1. pod start (RunPodSandbox + CreateContainer + StartContainer) and
//     teardown (StopPodSandbox + RemovePodSandbox), -n pods one after the
//     other, with the p50 of each call;
//  2. with -metrics, where peapod's time goes: the mean of each phase of
//     each operation (peapod_operation_phase_duration_seconds) over the
//     pods of section 1;
//  3. -parallel pods started at once: the wall time until all run;
//  4. -scale-pods pods of -scale-per-pod containers: the latency of the
//     List, Status and stats calls the kubelet makes, and (5.) the memory
//     footprint of the runtime with -memory-pods pods and at full scale;
//  6. -pulls image pulls of -pull-image.
//
// A summary gives each ratio against its goal. Benchmarks print figures;
// they never fail on them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line settings.
type options struct {
	image         string
	rounds        int
	n             int
	parallel      int
	scalePods     int
	scalePerPod   int
	scaleCalls    int
	scaleRounds   int
	memoryPods    int
	relistSeconds int
	churnEvery    time.Duration
	pullImage     string
	pulls         int
	containerdPID int
	metrics       namedValues // runtime name -> metrics URL
	pids          namedValues // runtime name -> own process IDs
	ioBinaries    namedValues // runtime name -> IO process binary
	ioMatches     namedValues // runtime name -> what its IO processes' command lines mention
}

func main() { os.Exit(run()) }

func run() int {
	opts, args, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "podbench: %v\n", err)
		return 2
	}
	// An interrupt cancels the measurements; the teardowns still run, on
	// a context of their own, so that no pod is left behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := newBench(opts, args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "podbench: %v\n", err)
		return 2
	}
	defer b.close()
	if err := b.run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "podbench: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(arguments []string) (options, []string, error) {
	var o options
	fs := flag.NewFlagSet("podbench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: podbench [flags] NAME=unix:///socket ... REFERENCE=unix:///socket")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.image, "image", "registry.k8s.io/e2e-test-images/busybox:1.29-2", "container image")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of each measurement (the runtime order alternates)")
	fs.IntVar(&o.n, "n", 20, "pods started one by one per runtime and round (0: no pod start section)")
	fs.IntVar(&o.parallel, "parallel", 30, "pods started at once per runtime and round (0: no parallel section)")
	fs.IntVar(&o.scalePods, "scale-pods", 250, "pods running during the scale section (0: no scale section)")
	fs.IntVar(&o.scalePerPod, "scale-per-pod", 2, "containers in each pod of the scale section")
	fs.IntVar(&o.scaleCalls, "scale-calls", 100, "timed calls of each List/Status/stats RPC in the scale section")
	fs.IntVar(&o.scaleRounds, "scale-rounds", 1, "rounds of the scale section (it is long)")
	fs.IntVar(&o.memoryPods, "memory-pods", 100, "pods running at the first memory measure of the scale section (0: full scale only)")
	fs.IntVar(&o.relistSeconds, "relist-seconds", 30, "seconds of the kubelet's relist and stats calls under pod churn, at the end of the scale section (0: none)")
	fs.DurationVar(&o.churnEvery, "churn-every", time.Second, "how often a pod is started (and the one before torn down) during the relist under churn: the same churn for every runtime")
	fs.StringVar(&o.pullImage, "pull-image", "registry.k8s.io/e2e-test-images/busybox:1.29-2", "image of the PullImage section")
	fs.IntVar(&o.pulls, "pulls", 10, "timed PullImage calls per runtime and round (0: no PullImage section)")
	fs.IntVar(&o.containerdPID, "containerd-pid", 0, "PID of the containerd daemon under the runtimes, to measure its memory growth")
	fs.Var(&o.metrics, "metrics", "NAME=http://127.0.0.1:PORT/metrics: the runtime's Prometheus metrics (repeatable)")
	fs.Var(&o.pids, "pid", "NAME=PID: a process of the runtime itself, for its memory (repeatable)")
	fs.Var(&o.ioBinaries, "io-binary", "NAME=PATH: the runtime's IO processes run PATH (repeatable)")
	fs.Var(&o.ioMatches, "io-match", "NAME=TEXT: the runtime's IO processes are those of -io-binary whose command line mentions TEXT (default: the pods' log directory)")
	if err := fs.Parse(arguments); err != nil {
		return o, nil, err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return o, nil, fmt.Errorf("need at least two runtimes: the measured one(s) and the reference, last")
	}
	if o.rounds < 1 || o.scaleRounds < 1 {
		return o, nil, fmt.Errorf("-rounds and -scale-rounds must be at least 1")
	}
	for _, v := range []int{o.n, o.parallel, o.scalePods, o.scaleCalls, o.memoryPods, o.relistSeconds, o.pulls} {
		if v < 0 {
			return o, nil, fmt.Errorf("counts must not be negative")
		}
	}
	if o.churnEvery <= 0 {
		return o, nil, fmt.Errorf("-churn-every must be positive")
	}
	if o.scalePods > 0 && (o.scalePerPod < 1 || o.scaleCalls < 1) {
		return o, nil, fmt.Errorf("-scale-per-pod and -scale-calls must be at least 1 when -scale-pods is set")
	}
	return o, fs.Args(), nil
}

// namedValues is a repeatable NAME=VALUE flag; a name may repeat.
type namedValues map[string][]string

func (v *namedValues) String() string {
	var parts []string
	for name, values := range *v {
		for _, value := range values {
			parts = append(parts, name+"="+value)
		}
	}
	return strings.Join(parts, ",")
}

func (v *namedValues) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" || value == "" {
		return fmt.Errorf("%q is not NAME=VALUE", s)
	}
	if *v == nil {
		*v = namedValues{}
	}
	(*v)[name] = append((*v)[name], value)
	return nil
}

// pidsOf returns the PIDs given for a runtime with -pid.
func (o options) pidsOf(name string) ([]int, error) {
	var pids []int
	for _, s := range o.pids[name] {
		pid, err := strconv.Atoi(s)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("-pid %s=%s: not a process ID", name, s)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
