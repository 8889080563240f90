// Package metrics owns peapod's Prometheus metrics and the HTTP endpoint that
// serves them.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"
)

// Metrics is the set of metrics peapod exports, on a registry of its own.
type Metrics struct {
	registry    *prometheus.Registry
	rpcDuration *prometheus.HistogramVec
	rpcErrors   *prometheus.CounterVec
}

// New creates the metrics, including the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "peapod",
			Name:      "cri_request_duration_seconds",
			Help:      "Latency of CRI calls, by method.",
			// From 0.5 ms (List/Status from the index) to about 2 min (image pulls).
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14),
		}, []string{"method"}),
		rpcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "peapod",
			Name:      "cri_request_errors_total",
			Help:      "CRI calls that returned an error, by method and gRPC code.",
		}, []string{"method", "code"}),
	}
	m.registry.MustRegister(
		m.rpcDuration, m.rpcErrors, phaseDuration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// phaseDuration times the steps of the operations on the pod start and
// stop paths, where the time of a CRI call goes: it is package-wide, so
// that the packages doing the steps need no handle on a Metrics.
var phaseDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Namespace: "peapod",
	Name:      "operation_phase_duration_seconds",
	Help:      "Latency of the steps of pod and container operations, by operation and phase.",
	// From 0.2 ms (a record write) to about 6 s (a slow CNI plugin).
	Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
}, []string{"operation", "phase"})

// Phase starts timing one phase of an operation; calling the function it
// returns ends it. Phases may overlap.
func Phase(operation, phase string) func() {
	start := time.Now()
	return func() { phaseDuration.WithLabelValues(operation, phase).Observe(time.Since(start).Seconds()) }
}

// ObserveRPC records one finished CRI call.
func (m *Metrics) ObserveRPC(method string, code codes.Code, d time.Duration) {
	m.rpcDuration.WithLabelValues(method).Observe(d.Seconds())
	if code != codes.OK {
		m.rpcErrors.WithLabelValues(method, code.String()).Inc()
	}
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Serve serves /metrics on addr until ctx is done. It returns once the
// listener is bound, so a bad address is reported at start-up.
func (m *Metrics) Serve(ctx context.Context, addr string) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Metrics server stopped", "address", addr)
		}
	}()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	return l.Addr(), nil
}
