package hostcaps

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHugetlbV2(t *testing.T) {
	root := t.TempDir()
	write := func(dir, controllers string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dir, "cgroup.controllers"), []byte(controllers+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("", "cpuset cpu io memory hugetlb pids")
	write("kubepods", "cpuset cpu io memory hugetlb pids")
	write("nohuge", "cpu memory pids")
	c := Caps{CgroupV2: true, CgroupRoot: root}
	cases := []struct {
		parent string
		want   bool
	}{
		{"/kubepods", true},
		{"/kubepods/burstable/pod1", true}, // not made yet: its nearest parent decides
		{"/nohuge", false},
		{"/nohuge/pod2", false},
		{"/", true},
		{"", true},
	}
	for _, tc := range cases {
		if got := c.Hugetlb(tc.parent); got != tc.want {
			t.Errorf("Hugetlb(%q) = %v, want %v", tc.parent, got, tc.want)
		}
	}
	if (Caps{CgroupV2: true, CgroupRoot: filepath.Join(root, "missing")}).Hugetlb("/x") {
		t.Error("Hugetlb with no cgroup filesystem = true, want false")
	}
	if !(Caps{HugetlbV1: true}).Hugetlb("/x") || (Caps{}).Hugetlb("/x") {
		t.Error("on cgroup v1, Hugetlb must follow whether a hierarchy is mounted")
	}
}

func TestOOMScoreAdj(t *testing.T) {
	cases := []struct {
		name string
		c    Caps
		want int
		got  int
	}{
		{"CAP_SYS_RESOURCE: as asked", Caps{LowerOOMScore: true}, -998, -998},
		{"no CAP_SYS_RESOURCE: own score", Caps{}, -998, 0},
		{"no CAP_SYS_RESOURCE, above own: as asked", Caps{OwnOOMScoreAdj: -500}, -100, -100},
		{"no CAP_SYS_RESOURCE, below own", Caps{OwnOOMScoreAdj: -500}, -999, -500},
	}
	for _, tc := range cases {
		if got := tc.c.OOMScoreAdj(tc.want); got != tc.got {
			t.Errorf("%s: OOMScoreAdj(%d) = %d, want %d", tc.name, tc.want, got, tc.got)
		}
	}
}

// Probe reads peapod's own score, and restricting never lets it lower one.
func TestProbe(t *testing.T) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Skip("no /proc/self/oom_score_adj")
	}
	if c := Probe(false); fmt.Sprint(c.OwnOOMScoreAdj) != strings.TrimSpace(string(b)) {
		t.Errorf("OwnOOMScoreAdj = %d, want %s", c.OwnOOMScoreAdj, b)
	}
	if Probe(true).LowerOOMScore {
		t.Error("Probe(restrict=true) may lower OOM scores")
	}
}
