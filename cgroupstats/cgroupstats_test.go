package cgroupstats

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// memoryStatV2 is a cgroup v2 memory.stat, shortened.
const memoryStatV2 = `anon 1216512
file 4096
kernel 352256
inactive_anon 1191936
active_anon 24576
inactive_file 4096
active_file 0
pgfault 1722
pgmajfault 3
`

// writeCgroup writes a cgroup v2 directory holding files.
func writeCgroup(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadV2(t *testing.T) {
	full := map[string]string{
		"cpu.stat":       "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
		"memory.current": "1576960\n",
		"memory.stat":    memoryStatV2,
	}
	withSwap := map[string]string{"memory.swap.current": "8192\n"}
	for name, v := range full {
		withSwap[name] = v
	}
	for _, tc := range []struct {
		name    string
		files   map[string]string
		want    Stats
		wantErr func(error) bool
	}{
		{"all", full, Stats{
			CPUUsageNanos: 2500000, MemoryUsage: 1576960, MemoryWorkingSet: 1576960 - 4096,
			MemoryRSS: 1216512, PageFaults: 1722, MajorPageFaults: 3,
		}, nil},
		{"swap", withSwap, Stats{
			CPUUsageNanos: 2500000, MemoryUsage: 1576960, MemoryWorkingSet: 1576960 - 4096,
			MemoryRSS: 1216512, PageFaults: 1722, MajorPageFaults: 3, SwapUsage: 8192, HasSwap: true,
		}, nil},
		{"no cgroup", nil, Stats{}, func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
		{"empty cpu.stat", map[string]string{"cpu.stat": ""}, Stats{}, func(err error) bool { return strings.Contains(err.Error(), "no values") }},
		{"bad memory.current", map[string]string{"cpu.stat": full["cpu.stat"], "memory.current": "max\n"}, Stats{}, func(err error) bool { return err != nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readV2(writeCgroup(t, tc.files))
			if tc.wantErr != nil {
				if err == nil || !tc.wantErr(err) {
					t.Fatalf("readV2 = %+v, %v; want an error", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("readV2 = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestReadKV(t *testing.T) {
	for _, tc := range []struct {
		name      string
		content   string
		oomKill   uint64
		wantError bool
	}{
		{"v1 oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", 2, false},
		{"v2 memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n", 1, false},
		{"no trailing newline", "oom_kill 7", 7, false},
		{"key missing", "low 0\n", 0, false},
		{"not numbers", "oom_kill many\n", 0, true},
		{"empty", "", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(writeCgroup(t, map[string]string{"f": tc.content}), "f")
			var got uint64
			err := readKV(path, field{"oom_kill", &got})
			if (err != nil) != tc.wantError || got != tc.oomKill {
				t.Fatalf("readKV = %d, %v; want %d (error: %v)", got, err, tc.oomKill, tc.wantError)
			}
		})
	}
}

// A file too large for the buffer is an error, not a silently cut read.
func TestReadFileTooLarge(t *testing.T) {
	path := filepath.Join(writeCgroup(t, map[string]string{"f": strings.Repeat("k 1\n", maxFileSize)}), "f")
	if err := readKV(path, field{"k", new(uint64)}); err == nil {
		t.Fatal("readKV of an oversized file succeeded")
	}
}

// BenchmarkReadV2 reads one cgroup's stats, as each stats call does for
// every container and pod.
func BenchmarkReadV2(b *testing.B) {
	dir := writeCgroup(b, map[string]string{
		"cpu.stat":       "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
		"memory.current": "1576960\n",
		"memory.stat":    strings.Repeat(memoryStatV2, 4),
	})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := readV2(dir); err != nil {
			b.Fatal(err)
		}
	}
}
