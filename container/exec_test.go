package container

import (
	"bytes"
	"testing"
)

// ExecSync's stdout and stderr share one budget, so that the answer fits
// the kubelet's 16 MiB message limit however the output is split.
func TestExecOutputBudget(t *testing.T) {
	cases := []struct {
		name      string
		out, errs int
	}{
		{"all stdout", 20 << 20, 0},
		{"all stderr", 0, 20 << 20},
		{"both over", 12 << 20, 12 << 20},
		{"both under", 1 << 20, 2 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			budget := &outputBudget{left: maxExecOutput}
			stdout, stderr := &boundedBuffer{budget: budget}, &boundedBuffer{budget: budget}
			chunk := bytes.Repeat([]byte("x"), 32<<10)
			for written := 0; written < max(tc.out, tc.errs); written += len(chunk) {
				if written < tc.out {
					if n, err := stdout.Write(chunk); n != len(chunk) || err != nil {
						t.Fatalf("Write = %d, %v", n, err)
					}
				}
				if written < tc.errs {
					stderr.Write(chunk)
				}
			}
			got := len(stdout.Bytes()) + len(stderr.Bytes())
			want := min(tc.out+tc.errs, maxExecOutput)
			if got != want {
				t.Errorf("kept %d bytes in all, want %d", got, want)
			}
		})
	}
}
