package containerio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// Each line becomes an entry: F for one ended by a newline, P for a piece
// of a long line and for text ending the stream without one (the kubelet
// then adds no newline to a termination message read from the log), the
// same however the stream's bytes are cut into reads.
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
		{"line of exactly the limit", long[1:] + "\n", []string{"F " + long[1:]}},
		{"line one byte over the limit", long + "\n", []string{"P " + long, "F "}},
		{"two pieces and the rest", long + long + "z", []string{"P " + long, "P " + long, "P z"}},
		{"CR at the cut stays whole", long[1:] + "\r\nq\n", []string{"P " + long[1:], "F ", "F q"}},
	}
	for _, tc := range cases {
		for _, read := range []struct {
			name string
			wrap func(*strings.Reader) interface{ Read([]byte) (int, error) }
		}{
			{"whole", func(r *strings.Reader) interface{ Read([]byte) (int, error) } { return r }},
			{"byte by byte", func(r *strings.Reader) interface{ Read([]byte) (int, error) } { return iotest.OneByteReader(r) }},
			{"halves", func(r *strings.Reader) interface{ Read([]byte) (int, error) } { return iotest.HalfReader(r) }},
		} {
			t.Run(tc.name+"/"+read.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "ctr.log")
				l, err := openLog(path)
				if err != nil {
					t.Fatal(err)
				}
				l.copyLines(read.wrap(strings.NewReader(tc.in)), "stdout")
				l.close()
				got := logEntries(t, path, "stdout")
				if strings.Join(got, "|") != strings.Join(tc.want, "|") {
					t.Errorf("entries %.200q, want %.200q", got, tc.want)
				}
			})
		}
	}
}

// logEntries reads a CRI log's entries of stream as "TAG content".
func logEntries(t *testing.T, path, stream string) []string {
	t.Helper()
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
		if len(f) != 4 {
			t.Fatalf("malformed entry %q", line)
		}
		if f[1] == stream {
			got = append(got, f[2]+" "+f[3])
		}
	}
	return got
}
