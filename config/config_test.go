package config

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// writeConfig writes content to a config file in a fresh temp dir and
// returns its path. Tests always pass it with --config, so that whatever is
// (or is not) at DefaultPath on this machine plays no part.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func load(t *testing.T, file string, flags ...string) (*Config, error) {
	t.Helper()
	return Load(append([]string{"--config", writeConfig(t, file)}, flags...), io.Discard)
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

// TestLoadPrecedence checks, for every key on its own, that a file value
// replaces the default and a flag replaces the file value, and that no other
// key changes.
func TestLoadPrecedence(t *testing.T) {
	cases := []struct {
		key      string
		file     string // TOML value
		flag     string
		fromFile func(*Config)
		fromFlag func(*Config)
		// also are flags the key cannot go without, given in every mode;
		// fromFile and fromFlag set them too.
		also []string
	}{
		{"listen", `"/f/peapod.sock"`, "/x/peapod.sock",
			func(c *Config) { c.Listen = "/f/peapod.sock" }, func(c *Config) { c.Listen = "/x/peapod.sock" }, nil},
		{"containerd-address", `"/f/containerd.sock"`, "/x/containerd.sock",
			func(c *Config) { c.ContainerdAddress = "/f/containerd.sock" }, func(c *Config) { c.ContainerdAddress = "/x/containerd.sock" }, nil},
		{"containerd-namespace", `"file-ns"`, "flag-ns",
			func(c *Config) { c.ContainerdNamespace = "file-ns" }, func(c *Config) { c.ContainerdNamespace = "flag-ns" }, nil},
		{"root", `"/f/root"`, "/x/root",
			func(c *Config) { c.Root = "/f/root" }, func(c *Config) { c.Root = "/x/root" }, nil},
		{"state", `"/f/state"`, "/x/state",
			func(c *Config) { c.State = "/f/state" }, func(c *Config) { c.State = "/x/state" }, nil},
		{"registry-config-path", `"/f/certs.d"`, "/x/certs.d",
			func(c *Config) { c.RegistryConfigPath = "/f/certs.d" }, func(c *Config) { c.RegistryConfigPath = "/x/certs.d" }, nil},
		{"cni-conf-dir", `"/f/net.d"`, "/x/net.d",
			func(c *Config) { c.CNIConfDir = "/f/net.d" }, func(c *Config) { c.CNIConfDir = "/x/net.d" }, nil},
		{"cni-bin-dir", `["/f/a", "/f/b"]`, "/x/a, /x/b,,/x/c",
			func(c *Config) { c.CNIBinDir = []string{"/f/a", "/f/b"} }, func(c *Config) { c.CNIBinDir = []string{"/x/a", "/x/b", "/x/c"} }, nil},
		{"pause-image", `"example.com/file/pause:1"`, "example.com/flag/pause:2",
			func(c *Config) { c.PauseImage = "example.com/file/pause:1" }, func(c *Config) { c.PauseImage = "example.com/flag/pause:2" }, nil},
		{"image-pull-progress-timeout", `"90s"`, "2m30s",
			func(c *Config) { c.PullProgressTimeout = Duration(90 * time.Second) }, func(c *Config) { c.PullProgressTimeout = Duration(150 * time.Second) }, nil},
		{"streaming-address", `"0.0.0.0:1000"`, "127.0.0.1:2000",
			func(c *Config) { c.StreamingAddress = "0.0.0.0:1000" }, func(c *Config) { c.StreamingAddress = "127.0.0.1:2000" }, nil},
		{"streaming-tls-cert", `"/f/tls.crt"`, "/x/tls.crt",
			func(c *Config) { c.StreamingTLSCert, c.StreamingTLSKey = "/f/tls.crt", "/a/tls.key" },
			func(c *Config) { c.StreamingTLSCert, c.StreamingTLSKey = "/x/tls.crt", "/a/tls.key" },
			[]string{"--streaming-tls-key=/a/tls.key"}},
		{"streaming-tls-key", `"/f/tls.key"`, "/x/tls.key",
			func(c *Config) { c.StreamingTLSCert, c.StreamingTLSKey = "/a/tls.crt", "/f/tls.key" },
			func(c *Config) { c.StreamingTLSCert, c.StreamingTLSKey = "/a/tls.crt", "/x/tls.key" },
			[]string{"--streaming-tls-cert=/a/tls.crt"}},
		{"streaming-tls-client-ca", `"/f/ca.crt"`, "/x/ca.crt",
			func(c *Config) {
				c.StreamingTLSCert, c.StreamingTLSKey, c.StreamingTLSCA = "/a/tls.crt", "/a/tls.key", "/f/ca.crt"
			},
			func(c *Config) {
				c.StreamingTLSCert, c.StreamingTLSKey, c.StreamingTLSCA = "/a/tls.crt", "/a/tls.key", "/x/ca.crt"
			},
			[]string{"--streaming-tls-cert=/a/tls.crt", "--streaming-tls-key=/a/tls.key"}},
		{"metrics-address", `"127.0.0.1:9100"`, "[::1]:9200",
			func(c *Config) { c.MetricsAddress = "127.0.0.1:9100" }, func(c *Config) { c.MetricsAddress = "[::1]:9200" }, nil},
		{"io-binary", `"/f/peapod-io"`, "/x/peapod-io",
			func(c *Config) { c.IOBinary = "/f/peapod-io" }, func(c *Config) { c.IOBinary = "/x/peapod-io" }, nil},
		{"restrict-oom-score-adj", `true`, "false",
			func(c *Config) { c.RestrictOOMScoreAdj = true }, func(c *Config) { c.RestrictOOMScoreAdj = false }, nil},
		{"v", `3`, "5",
			func(c *Config) { c.Verbosity = 3 }, func(c *Config) { c.Verbosity = 5 }, nil},
	}
	// Keys that are not flags (tables), and default-runtime, whose value
	// must name a table entry, are covered by TestRuntimes.
	var flagKeys int
	for _, f := range fields(Default()) {
		if f.flag && f.key != "default-runtime" {
			flagKeys++
		}
	}
	if len(cases) != flagKeys {
		t.Fatalf("precedence table covers %d keys, Config has %d flag keys", len(cases), flagKeys)
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			fileLine := tc.key + " = " + tc.file + "\n"
			modes := []struct {
				name  string
				file  string
				flags []string
				want  func(*Config)
			}{
				{"defaults", "", nil, func(*Config) {}},
				{"file", fileLine, nil, tc.fromFile},
				{"flag", "", []string{"--" + tc.key, tc.flag}, tc.fromFlag},
				{"flag over file", fileLine, []string{"--" + tc.key + "=" + tc.flag}, tc.fromFlag},
			}
			for _, m := range modes {
				if m.name == "defaults" && len(tc.also) > 0 {
					continue // the companions are not valid alone
				}
				got, err := load(t, m.file, append(m.flags, tc.also...)...)
				if err != nil {
					t.Fatalf("%s: Load: %v", m.name, err)
				}
				want := *Default()
				m.want(&want)
				if !reflect.DeepEqual(got, &want) {
					t.Errorf("%s:\n got %+v\nwant %+v", m.name, got, &want)
				}
			}
		})
	}
}

// A flag set to the default value still wins over the file: what counts is
// that the flag was given, not that it differs from the default.
func TestLoadFlagAtDefaultValueWinsOverFile(t *testing.T) {
	got, err := load(t, "v = 3\ncontainerd-namespace = \"file-ns\"\n", "-v=0", "--containerd-namespace", Default().ContainerdNamespace)
	if err != nil {
		t.Fatal(err)
	}
	if got.Verbosity != 0 || got.ContainerdNamespace != Default().ContainerdNamespace {
		t.Errorf("got v=%d namespace=%q, want the flags' v=0 namespace=%q", got.Verbosity, got.ContainerdNamespace, Default().ContainerdNamespace)
	}
}

func TestLoadMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope", "config.toml")

	// At the default path (not named with --config), a missing file means
	// defaults. Load always consults DefaultPath then, so go through loadFile
	// to stay independent of this machine's /etc.
	c := Default()
	if err := c.loadFile(missing, false); err != nil {
		t.Fatalf("missing file at the default path: %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("missing file at the default path changed the config: %+v", c)
	}

	// Named explicitly, it must exist.
	_, err := Load([]string{"--config", missing}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(--config %s) = %v, want an error naming the file", missing, err)
	}
}

func TestLoadFileErrors(t *testing.T) {
	cases := []struct {
		name string
		file string
		want []string // substrings of the error
	}{
		{"unknown key", "listen = \"/a.sock\"\nno-such-key = 1\n", []string{"no-such-key", "unknown key"}},
		{"unknown table", "[containerd]\naddress = \"/x\"\n", []string{"containerd", "unknown key"}},
		{"misspelled key", "cni-bin-dirs = [\"/opt/cni/bin\"]\n", []string{"cni-bin-dirs"}},
		{"string for int", "listen = \"/a.sock\"\nv = \"high\"\n", []string{"config.toml:2:5", "Verbosity"}},
		{"float for int", "v = 1.5\n", []string{"config.toml:1:5"}},
		{"string for list", "cni-bin-dir = \"/opt/cni/bin\"\n", []string{"config.toml:1:15", "CNIBinDir"}},
		{"syntax", "listen = [\n", []string{"config.toml:1:"}},
		{"invalid value from the file", "root = \"var/lib/peapod\"\n", []string{"root:", `"var/lib/peapod"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.file)
			if err == nil {
				t.Fatalf("Load accepted %q", tc.file)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadFlagErrors(t *testing.T) {
	cases := []struct {
		name  string
		flags []string
		want  string
	}{
		{"unknown flag", []string{"--no-such-flag"}, "no-such-flag"},
		{"not a number", []string{"-v", "many"}, "not a whole number"},
		{"positional argument", []string{"serve"}, `unexpected argument "serve"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, "", tc.flags...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load(%q) = %v, want an error containing %q", tc.flags, err, tc.want)
			}
		})
	}
}

// TestValidateNamesKey checks that each invalid value, given as a flag, is
// rejected with an error that starts with its key.
func TestValidateNamesKey(t *testing.T) {
	cases := []struct {
		key, value string
	}{
		{"listen", "peapod.sock"},
		{"root", "var/lib/peapod"},
		{"state", "./run"},
		{"registry-config-path", "certs.d"},
		{"cni-conf-dir", "net.d"},
		{"cni-bin-dir", "/opt/cni/bin,bin"},
		{"cni-bin-dir", ""},
		{"cni-bin-dir", " , "},
		{"containerd-address", ""},
		{"containerd-namespace", ""},
		{"containerd-namespace", "Bad Namespace!"},
		{"containerd-namespace", "-leading-dash"},
		{"pause-image", ""},
		{"pause-image", "Registry.K8s.io/PAUSE:3.10"},
		{"pause-image", "pause:not a tag"},
		{"streaming-address", "127.0.0.1"},
		{"streaming-address", ""},
		{"streaming-tls-cert", "/etc/peapod/tls.crt"},
		{"streaming-tls-key", "/etc/peapod/tls.key"},
		{"streaming-tls-client-ca", "/etc/peapod/ca.crt"},
		{"streaming-tls-cert", "tls.crt --streaming-tls-key=/etc/peapod/tls.key"},
		{"metrics-address", "9100"},
		{"metrics-address", "[::1"},
		{"io-binary", "peapod-io"},
		{"v", "-1"},
	}
	for _, tc := range cases {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			_, err := load(t, "", "--"+tc.key+"="+tc.value)
			if err == nil {
				t.Fatalf("--%s=%q accepted", tc.key, tc.value)
			}
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(tc.key) + `: `).MatchString(err.Error()) {
				t.Errorf("error %q does not name key %q", err, tc.key)
			}
		})
	}
}

// Every bad value is reported at once, not only the first.
func TestValidateReportsAll(t *testing.T) {
	c := Default()
	c.Root, c.ContainerdAddress, c.Verbosity = "rel", "", -2
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted three bad values")
	}
	for _, key := range []string{"root: ", "containerd-address: ", "v: "} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not mention %q", err, key)
		}
	}
}

func TestValidateAcceptsEmptyMetricsAddress(t *testing.T) {
	c := Default()
	c.MetricsAddress = ""
	if err := c.Validate(); err != nil {
		t.Errorf("empty metrics-address (metrics off) rejected: %v", err)
	}
}

func TestWriteDefault(t *testing.T) {
	var b strings.Builder
	if err := WriteDefault(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()

	// Decode strictly over a config whose every field differs from the
	// default: equality then proves each key is present with its default.
	c := &Config{
		Listen: "x", ContainerdAddress: "x", ContainerdNamespace: "x", Root: "x", State: "x",
		RegistryConfigPath: "x", CNIConfDir: "x", CNIBinDir: []string{"x"}, PauseImage: "x",
		StreamingAddress: "x", MetricsAddress: "x", Verbosity: 42, DefaultRuntime: "x",
		Runtimes: map[string]Runtime{"x": {}},
	}
	delete(c.Runtimes, "x") // a table decodes into the map: start it empty
	if err := c.decode(strings.NewReader(out), "default"); err != nil {
		t.Fatalf("decoding WriteDefault's output: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("WriteDefault decodes to\n %+v\nwant\n %+v\n%s", c, Default(), out)
	}

	for _, f := range fields(Default()) {
		line := `(?m)^` + regexp.QuoteMeta(f.key) + ` = `
		if !f.flag {
			line = `(?m)^\[` + regexp.QuoteMeta(f.key) + `\]$`
		}
		if !regexp.MustCompile(line).MatchString(out) {
			t.Errorf("WriteDefault has no line for key %q", f.key)
		}
		if f.doc == "" || !strings.Contains(out, "# "+f.doc+"\n") {
			t.Errorf("WriteDefault lacks the doc comment of key %q", f.key)
		}
	}

	// And it loads as a config file.
	got, err := Load([]string{"--config", writeConfig(t, out)}, io.Discard)
	if err != nil {
		t.Fatalf("Load of WriteDefault's output: %v", err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("Load of WriteDefault's output = %+v, want defaults", got)
	}
}

// Every key but a table is a flag, with the key's doc as usage.
func TestEveryKeyIsAFlag(t *testing.T) {
	var usage strings.Builder
	_, err := Load([]string{"-h"}, &usage)
	if err == nil {
		t.Fatal("Load(-h) returned no error")
	}
	for _, f := range fields(Default()) {
		if f.flag != !strings.HasPrefix(f.v.Type().String(), "map[") {
			t.Errorf("key %s: flag=%v, but only tables are not flags", f.key, f.flag)
		}
		if f.flag && !strings.Contains(usage.String(), "-"+f.key) {
			t.Errorf("usage lacks flag -%s", f.key)
		}
	}
}

// TestRuntimes covers the runtime handler table and default-runtime.
func TestRuntimes(t *testing.T) {
	crun := Runtime{Type: RuncShim, Binary: "/usr/bin/crun"}
	runc := Runtime{Type: RuncShim}
	cases := []struct {
		name    string
		file    string
		flags   []string
		want    map[string]Runtime
		def     string
		wantErr string
	}{
		{name: "defaults", want: map[string]Runtime{"runc": runc}, def: "runc"},
		{name: "added handler keeps runc",
			file: "default-runtime = \"crun\"\n[runtimes.crun]\nbinary = \"/usr/bin/crun\"\n",
			want: map[string]Runtime{"runc": runc, "crun": crun}, def: "crun"},
		{name: "flag picks the default",
			file:  "default-runtime = \"crun\"\n[runtimes.crun]\nbinary = \"/usr/bin/crun\"\n",
			flags: []string{"--default-runtime=runc"},
			want:  map[string]Runtime{"runc": runc, "crun": crun}, def: "runc"},
		{name: "runc options, type defaulted",
			file: "[runtimes.runc]\nbinary = \"/opt/runc\"\nroot = \"/run/r\"\n",
			want: map[string]Runtime{"runc": {Type: RuncShim, Binary: "/opt/runc", Root: "/run/r"}}, def: "runc"},
		{name: "other shim type",
			file: "[runtimes.kata]\ntype = \"io.containerd.kata.v2\"\n",
			want: map[string]Runtime{"runc": runc, "kata": {Type: "io.containerd.kata.v2"}}, def: "runc"},
		{name: "unknown default", file: "default-runtime = \"gvisor\"\n", wantErr: `default-runtime: "gvisor" is not a key`},
		{name: "unknown default by flag", flags: []string{"--default-runtime", "gvisor"}, wantErr: `default-runtime: "gvisor"`},
		{name: "bad name", file: "[runtimes.Bad_Name]\n", wantErr: "runtimes.Bad_Name: a handler name must be a DNS label"},
		{name: "relative binary", file: "[runtimes.crun]\nbinary = \"crun\"\n", wantErr: `runtimes.crun.binary: must be an absolute path`},
		{name: "relative root", file: "[runtimes.crun]\nroot = \"run\"\n", wantErr: `runtimes.crun.root: must be an absolute path`},
		{name: "options of another type", file: "[runtimes.kata]\ntype = \"io.containerd.kata.v2\"\nbinary = \"/x\"\n",
			wantErr: "runtimes.kata: binary and root are options of"},
		{name: "unknown key", file: "[runtimes.crun]\nbinnary = \"/x\"\n", wantErr: "unknown key(s) runtimes.crun.binnary"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := load(t, tc.file, tc.flags...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got.DefaultRuntime != tc.def || !reflect.DeepEqual(got.Runtimes, tc.want) {
				t.Errorf("got default %q runtimes %+v, want %q %+v", got.DefaultRuntime, got.Runtimes, tc.def, tc.want)
			}
		})
	}
}
