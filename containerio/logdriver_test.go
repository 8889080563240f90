package containerio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyLines tags entries as containerd's CRI does: F for a line ended by a
// newline, P for a piece of a long line and for text ending the stream
// without one (the kubelet then adds no newline to a termination message
// read from the log).
func TestCopyLines(t *testing.T) {
	long := strings.Repeat("x", maxLogLine)
	cases := []struct {
		name, in string
		want     []string // "TAG content"
	}{
		{"lines", "a\nb\n", []string{"F a", "F b"}},
		{"last line without a newline", "a\nDONE", []string{"F a", "P DONE"}},
		{"only text without a newline", "DONE", []string{"P DONE"}},
		{"empty line", "\n", []string{"F "}},
		{"CRLF", "a\r\nb\r\n", []string{"F a", "F b"}},
		{"nothing", "", nil},
		{"long line", long + "yz\n", []string{"P " + long, "F yz"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ctr.log")
			l, err := openLog(path)
			if err != nil {
				t.Fatal(err)
			}
			l.copyLines(strings.NewReader(tc.in), "stdout")
			l.close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
				if line == "" {
					continue
				}
				// <time> <stream> <tag> <content>
				f := strings.SplitN(line, " ", 4)
				if len(f) != 4 || f[1] != "stdout" {
					t.Fatalf("malformed entry %q", line)
				}
				got = append(got, f[2]+" "+f[3])
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("entries %q, want %q", got, tc.want)
			}
		})
	}
}
