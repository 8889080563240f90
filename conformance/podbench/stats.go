package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// percentile returns the p-th percentile of d (0 for none), by rank as the
// earlier podbench did: d[len*p/100] of the sorted samples.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)*p/100, len(s)-1)]
}

func median(d []time.Duration) time.Duration { return percentile(d, 50) }

// medianFloat is the median of figures that are not durations (MiB).
func medianFloat(f []float64) float64 {
	if len(f) == 0 {
		return 0
	}
	s := slices.Clone(f)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func mib(f float64) string { return fmt.Sprintf("%.1fMiB", f) }

// ratioOf is runtime / reference, NaN when the reference is 0.
func ratioOf(v, ref float64) float64 {
	if ref == 0 {
		return math.NaN()
	}
	return v / ref
}

// ratio formats runtime / reference as 0.83x.
func ratio(v, ref float64) string {
	r := ratioOf(v, ref)
	if math.IsNaN(r) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r)
}

// goal is one line of the summary: a ratio of a runtime to the reference
// and the most it should be.
type goal struct {
	runtime string
	what    string
	ratio   float64
	max     float64
}

// addGoal records a ratio for the summary.
func (b *bench) addGoal(runtime, what string, v, ref, max float64) {
	b.goals = append(b.goals, goal{runtime: runtime, what: what, ratio: ratioOf(v, ref), max: max})
}

// printSummary prints every recorded ratio against its goal.
func (b *bench) printSummary() {
	if len(b.goals) == 0 {
		return
	}
	fmt.Printf("\n== ratios (runtime / reference %s; goal)\n", b.reference().name)
	for _, g := range b.goals {
		verdict := "not met"
		if g.ratio <= g.max {
			verdict = "met"
		}
		r := "-"
		if !math.IsNaN(g.ratio) {
			r = fmt.Sprintf("%.2fx", g.ratio)
		}
		label := g.what
		if len(b.targets) > 2 {
			label = g.runtime + ": " + g.what
		}
		fmt.Printf("%-40s %8s   goal <= %.2f   %s\n", label, r, g.max, verdict)
	}
}
