package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// target is one CRI runtime under measurement.
type target struct {
	name       string
	endpoint   string
	conn       *grpc.ClientConn
	rt         runtime.RuntimeServiceClient
	is         runtime.ImageServiceClient
	pids       []int  // its own processes (-pid), for its memory
	ioBinary   string // what its IO processes run (-io-binary)
	ioMatch    string // what their command lines mention (-io-match); empty: the pods' log root
	metricsURL string // its Prometheus metrics (-metrics)
}

// bench holds the runtimes, the options and the results for the summary.
type bench struct {
	opts    options
	targets []*target // the last one is the reference
	logRoot string    // the pods' log directories, removed at the end
	goals   []goal
}

func newBench(opts options, args []string) (*bench, error) {
	b := &bench{opts: opts}
	for _, arg := range args {
		t, err := newTarget(opts, arg)
		if err != nil {
			b.close()
			return nil, err
		}
		b.targets = append(b.targets, t)
	}
	if err := b.checkNames(); err != nil {
		b.close()
		return nil, err
	}
	dir, err := os.MkdirTemp("", "podbench-logs-")
	if err != nil {
		b.close()
		return nil, fmt.Errorf("creating the pods' log directory: %w", err)
	}
	b.logRoot = dir
	return b, nil
}

func newTarget(opts options, arg string) (*target, error) {
	name, endpoint, ok := strings.Cut(arg, "=")
	if !ok || name == "" {
		return nil, fmt.Errorf("%q is not NAME=ENDPOINT", arg)
	}
	// CRI runtimes serve a unix socket; anything else could leave the machine.
	if !strings.HasPrefix(endpoint, "unix://") {
		return nil, fmt.Errorf("%s: endpoint %q is not unix:///path", name, endpoint)
	}
	t := &target{name: name, endpoint: endpoint}
	var err error
	if t.pids, err = opts.pidsOf(name); err != nil {
		return nil, err
	}
	if bins := opts.ioBinaries[name]; len(bins) > 0 {
		if t.ioBinary, err = filepath.EvalSymlinks(bins[len(bins)-1]); err != nil {
			return nil, fmt.Errorf("-io-binary %s: %w", name, err)
		}
	}
	if m := opts.ioMatches[name]; len(m) > 0 {
		t.ioMatch = m[len(m)-1]
	}
	if urls := opts.metrics[name]; len(urls) > 0 {
		t.metricsURL = urls[len(urls)-1]
		if err := checkLoopback(t.metricsURL); err != nil {
			return nil, fmt.Errorf("-metrics %s: %w", name, err)
		}
	}
	t.conn, err = grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("%s: connecting to %s: %w", name, endpoint, err)
	}
	t.rt, t.is = runtime.NewRuntimeServiceClient(t.conn), runtime.NewImageServiceClient(t.conn)
	return t, nil
}

// checkLoopback refuses a URL that is not on this machine's loopback.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%q: only http:// is supported", raw)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not on the loopback", raw)
	}
	return nil
}

// checkNames refuses flags naming no runtime, a typo that would silently
// drop a measure.
func (b *bench) checkNames() error {
	known := map[string]bool{}
	for _, t := range b.targets {
		if known[t.name] {
			return fmt.Errorf("runtime %s given twice", t.name)
		}
		known[t.name] = true
	}
	for flagName, values := range map[string]namedValues{"-metrics": b.opts.metrics, "-pid": b.opts.pids, "-io-binary": b.opts.ioBinaries, "-io-match": b.opts.ioMatches} {
		for name := range values {
			if !known[name] {
				return fmt.Errorf("%s %s: no runtime of that name", flagName, name)
			}
		}
	}
	return nil
}

func (b *bench) close() {
	for _, t := range b.targets {
		_ = t.conn.Close()
	}
	if b.logRoot != "" {
		if err := os.RemoveAll(b.logRoot); err != nil {
			fmt.Fprintf(os.Stderr, "podbench: removing %s: %v\n", b.logRoot, err)
		}
	}
}

func (b *bench) reference() *target { return b.targets[len(b.targets)-1] }

// order is the runtime order of a round: as given in even rounds, reversed
// in odd ones, so that no runtime always runs right after the other's load.
func (b *bench) order(round int) []*target {
	order := slices.Clone(b.targets)
	if round%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// run prepares every runtime, then runs each section that is switched on.
func (b *bench) run(ctx context.Context) error {
	for _, t := range b.targets {
		if err := b.prepare(ctx, t); err != nil {
			return fmt.Errorf("%s: preparing: %w", t.name, err)
		}
	}
	sections := []struct {
		on  bool
		run func(context.Context) error
	}{
		{b.opts.n > 0, b.startSection},
		{b.opts.parallel > 0, b.parallelSection},
		{b.opts.scalePods > 0, b.scaleSection},
		{b.opts.pulls > 0, b.pullSection},
	}
	for _, s := range sections {
		if !s.on {
			continue
		}
		if err := s.run(ctx); err != nil {
			return err
		}
	}
	b.printSummary()
	return nil
}

// prepare pulls the container image and starts one pod, untimed, so that
// no section measures an image pull (the pause image's included).
func (b *bench) prepare(ctx context.Context, t *target) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if _, err := t.is.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: b.opts.image}}); err != nil {
		return fmt.Errorf("pulling %s: %w", b.opts.image, err)
	}
	return b.warmUp(ctx, t)
}

// progress reports what runs now, on stderr, away from the tables.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "podbench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
