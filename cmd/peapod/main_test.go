package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/peapod-cri/peapod/config"
	"github.com/peapod-cri/peapod/version"
)

func TestRunVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"version"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "peapod "+version.Version+"\n") || !strings.Contains(out.String(), "go: go") {
		t.Errorf("version output %q", out.String())
	}
	if errOut.Len() != 0 {
		t.Errorf("version wrote to stderr: %q", errOut.String())
	}
}

func TestRunConfigDefault(t *testing.T) {
	var out, want bytes.Buffer
	if err := run([]string{"config", "default"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if err := config.WriteDefault(&want); err != nil {
		t.Fatal(err)
	}
	if out.String() != want.String() || out.Len() == 0 {
		t.Errorf("config default printed\n%s\nwant\n%s", out.String(), want.String())
	}
}

// Each of these fails before serving, and before reading any config file.
func TestRunUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"config"}, "usage: peapod config default"},
		{[]string{"config", "dump"}, "usage: peapod config default"},
		{[]string{"config", "default", "extra"}, "usage: peapod config default"},
		{[]string{"serve"}, `unexpected argument "serve"`},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--v", "x"}, "not a whole number"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			err := run(tc.args, &out, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("run(%q) printed %q", tc.args, out.String())
			}
		})
	}
}
