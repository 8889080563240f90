package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// A phase timed with Phase is served, by operation and phase, by every
// Metrics' handler.
func TestPhaseIsServed(t *testing.T) {
	m := New()
	for _, p := range []struct{ op, phase string }{
		{"sandbox_run", "cni"},
		{"sandbox_run", "cni"},
		{"container_start", "task_start"},
	} {
		Phase(p.op, p.phase)()
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`peapod_operation_phase_duration_seconds_count{operation="sandbox_run",phase="cni"} 2`,
		`peapod_operation_phase_duration_seconds_count{operation="container_start",phase="task_start"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
