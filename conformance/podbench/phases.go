package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// phaseMetric is peapod's histogram of the phases of its operations.
const phaseMetric = "peapod_operation_phase_duration_seconds"

// scrapeTimeout bounds one GET of a metrics endpoint on the loopback.
const scrapeTimeout = 10 * time.Second

// phaseKey is one phase of one operation.
type phaseKey struct{ operation, phase string }

// sumCount is a histogram's _sum and _count.
type sumCount struct{ sum, count float64 }

// phaseTotals is the phase histogram's _sum and _count of every phase.
type phaseTotals map[phaseKey]sumCount

// minus is what the totals grew by since before.
func (p phaseTotals) minus(before phaseTotals) phaseTotals {
	out := phaseTotals{}
	for k, v := range p {
		b := before[k]
		out[k] = sumCount{sum: v.sum - b.sum, count: v.count - b.count}
	}
	return out
}

// add adds the growth of another round.
func (p *phaseTotals) add(delta phaseTotals) {
	if *p == nil {
		*p = phaseTotals{}
	}
	for k, v := range delta {
		t := (*p)[k]
		(*p)[k] = sumCount{sum: t.sum + v.sum, count: t.count + v.count}
	}
}

// metricsClient never goes through a proxy: the endpoint is on the loopback.
var metricsClient = &http.Client{Transport: &http.Transport{Proxy: nil}}

// scrapePhases reads the phase histogram from t's metrics endpoint; nil
// when t has none.
func (t *target) scrapePhases(ctx context.Context) (*phaseTotals, error) {
	if t.metricsURL == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.metricsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", t.metricsURL, err)
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics %s: %s", t.metricsURL, resp.Status)
	}
	totals, err := parsePhases(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", t.metricsURL, err)
	}
	return &totals, nil
}

// parsePhases reads the _sum and _count series of the phase histogram
// from the Prometheus text format.
func parsePhases(r io.Reader) (phaseTotals, error) {
	totals := phaseTotals{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, err
		}
		suffix, ok := strings.CutPrefix(s.name, phaseMetric)
		if !ok || (suffix != "_sum" && suffix != "_count") {
			continue
		}
		k := phaseKey{operation: s.labels["operation"], phase: s.labels["phase"]}
		v := totals[k]
		if suffix == "_sum" {
			v.sum = s.value
		} else {
			v.count = s.value
		}
		totals[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	return totals, nil
}

// sample is one `name{labels} value [timestamp]` line.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func parseSample(line string) (sample, error) {
	var s sample
	i := strings.IndexAny(line, "{ \t")
	if i <= 0 {
		return s, fmt.Errorf("malformed sample %q", line)
	}
	s.name, line = line[:i], line[i:]
	if line[0] == '{' {
		labels, n, err := parseLabels(line[1:])
		if err != nil {
			return s, fmt.Errorf("sample %q: %w", s.name, err)
		}
		s.labels, line = labels, line[1+n:]
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return s, fmt.Errorf("sample %q has no value", s.name)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("sample %q: %w", s.name, err)
	}
	s.value = v
	return s, nil
}

// parseLabels reads `key="value",...}` (the text after the opening brace)
// and returns the labels and how many bytes it read, the brace included.
func parseLabels(s string) (map[string]string, int, error) {
	labels := map[string]string{}
	i := 0
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	for {
		skipSpace()
		if i < len(s) && s[i] == '}' {
			return labels, i + 1, nil
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, 0, fmt.Errorf("malformed labels %q", s)
		}
		key := strings.TrimSpace(s[i : i+eq])
		i += eq + 1
		skipSpace()
		if i >= len(s) || s[i] != '"' {
			return nil, 0, fmt.Errorf("label %s: value not quoted", key)
		}
		value, n, err := unquoteLabel(s[i+1:])
		if err != nil {
			return nil, 0, fmt.Errorf("label %s: %w", key, err)
		}
		labels[key] = value
		i += 1 + n
		skipSpace()
		if i < len(s) && s[i] == ',' {
			i++
		}
	}
}

// unquoteLabel reads a label value up to its closing quote, undoing the
// escapes of the text format (\\, \" and \n), and returns it and how many
// bytes it read, the closing quote included.
func unquoteLabel(s string) (string, int, error) {
	var v strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return v.String(), i + 1, nil
		case c == '\\' && i+1 < len(s):
			i++
			if s[i] == 'n' {
				v.WriteByte('\n')
			} else {
				v.WriteByte(s[i])
			}
		default:
			v.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unterminated value")
}

// operationOrder is the order of a pod's life; other operations follow.
var operationOrder = []string{"sandbox_run", "container_create", "container_start", "container_stop", "sandbox_stop", "sandbox_remove"}

// printPhases prints the mean of each phase over the timed pods of
// section 1, biggest first within each operation.
func printPhases(name string, totals phaseTotals, pods int) {
	keys := make([]phaseKey, 0, len(totals))
	for k, v := range totals {
		if v.count > 0 {
			keys = append(keys, k)
		}
	}
	rank := func(op string) int {
		if i := slices.Index(operationOrder, op); i >= 0 {
			return i
		}
		return len(operationOrder)
	}
	mean := func(k phaseKey) float64 { return totals[k].sum / totals[k].count }
	slices.SortFunc(keys, func(a, b phaseKey) int {
		return cmp.Or(cmp.Compare(rank(a.operation), rank(b.operation)), cmp.Compare(a.operation, b.operation),
			cmp.Compare(mean(b), mean(a)), cmp.Compare(a.phase, b.phase))
	})
	fmt.Printf("\n== %s: phases of its operations over the %d timed pods (%s; phases may overlap)\n", name, pods, phaseMetric)
	if len(keys) == 0 {
		fmt.Println("   (no phase observed)")
		return
	}
	fmt.Printf("%-22s %-22s %10s %8s\n", "operation", "phase", "mean", "per pod")
	for _, k := range keys {
		v := totals[k]
		fmt.Printf("%-22s %-22s %10s %8.2f\n", k.operation, k.phase,
			ms(time.Duration(v.sum/v.count*float64(time.Second))), v.count/float64(pods))
	}
}
