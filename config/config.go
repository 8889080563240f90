// Package config defines peapod's configuration: one TOML file whose every key
// is optional, with a command-line flag of the same name for each key.
//
// Precedence is defaults < file < flags. The config file path itself is only a
// flag (--config); a missing file at the default path means "all defaults",
// while a file named explicitly must exist.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/distribution/reference"
	"github.com/pelletier/go-toml/v2"
)

// DefaultPath is where peapod looks for its config file when --config is not given.
const DefaultPath = "/etc/peapod/config.toml"

// Config is peapod's configuration. Each field's toml tag is both its key in
// the config file and the name of its flag; its doc tag is the flag usage and
// the comment printed by `peapod config default`.
type Config struct {
	Listen              string   `toml:"listen" json:"listen" doc:"Unix socket the CRI (runtime and image services) is served on."`
	ContainerdAddress   string   `toml:"containerd-address" json:"containerd-address" doc:"Unix socket of the containerd daemon peapod drives."`
	ContainerdNamespace string   `toml:"containerd-namespace" json:"containerd-namespace" doc:"containerd namespace holding peapod's containers, images and snapshots."`
	Root                string   `toml:"root" json:"root" doc:"Directory for persistent state."`
	State               string   `toml:"state" json:"state" doc:"Directory for runtime state (lost on reboot)."`
	RegistryConfigPath  string   `toml:"registry-config-path" json:"registry-config-path" doc:"Directory of registry host configs in containerd's hosts.toml layout (<host>/hosts.toml)."`
	CNIConfDir          string   `toml:"cni-conf-dir" json:"cni-conf-dir" doc:"Directory holding CNI network configs; the first usable one (by file name) is the pod network."`
	CNIBinDir           []string `toml:"cni-bin-dir" json:"cni-bin-dir" doc:"Directories searched for CNI plugin binaries, in order (flag: comma-separated)."`
	PauseImage          string   `toml:"pause-image" json:"pause-image" doc:"Image of the pause container that holds each pod's namespaces."`
	PullProgressTimeout Duration `toml:"image-pull-progress-timeout" json:"image-pull-progress-timeout" doc:"An image pull that receives no data for this long fails (e.g. \"5m\", \"90s\")."`
	StreamingAddress    string   `toml:"streaming-address" json:"streaming-address" doc:"host:port of the exec/attach/port-forward streaming server (port 0: any free port)."`
	StreamingTLSCert    string   `toml:"streaming-tls-cert" json:"streaming-tls-cert" doc:"PEM certificate of the streaming server; with streaming-tls-key it serves HTTPS (read again when the files change)."`
	StreamingTLSKey     string   `toml:"streaming-tls-key" json:"streaming-tls-key" doc:"PEM private key of streaming-tls-cert."`
	StreamingTLSCA      string   `toml:"streaming-tls-client-ca" json:"streaming-tls-client-ca" doc:"PEM CA certificates; when set, streaming clients must present a certificate signed by one of them."`
	MetricsAddress      string   `toml:"metrics-address" json:"metrics-address" doc:"host:port serving Prometheus metrics on /metrics; empty turns metrics off."`
	IOBinary            string   `toml:"io-binary" json:"io-binary" doc:"The small program peapod runs as the node's IO server (containers' CRI logs and attach) and in pods of its built-in pause image; empty: peapod-io next to peapod's own binary, else on the PATH."`
	Verbosity           int      `toml:"v" json:"v" doc:"Log verbosity (klog -v); 4 logs every CRI call."`
	DefaultRuntime      string   `toml:"default-runtime" json:"default-runtime" doc:"Runtime handler of pods that name none; a key of [runtimes]."`
	RestrictOOMScoreAdj bool     `toml:"restrict-oom-score-adj" json:"restrict-oom-score-adj" doc:"Never give a container an oom_score_adj below peapod's own, even where peapod may lower it (for a peapod that runs in a container). Without CAP_SYS_RESOURCE peapod always keeps to its own."`
	// Runtimes is a table, so it has no flag and comes last (TOML tables
	// follow the plain keys).
	Runtimes map[string]Runtime `toml:"runtimes" json:"runtimes" flag:"-" doc:"Runtime handlers, by the name a RuntimeClass gives as its handler. When no [runtimes.crun] is configured and crun is installed, peapod adds a crun handler."`
}

// Runtime is one runtime handler: how containerd runs the pods that name it.
type Runtime struct {
	// Type is the containerd runtime (shim) type.
	Type string `toml:"type" json:"type"`
	// Binary is the OCI runtime binary the runc shim runs; empty means the
	// "runc" the shim finds on containerd's PATH.
	Binary string `toml:"binary" json:"binary"`
	// Root is the OCI runtime's state directory; empty means the shim's default.
	Root string `toml:"root" json:"root"`
}

// RuncShim is containerd's runtime type for runc-compatible OCI runtimes.
const RuncShim = "io.containerd.runc.v2"

// Default returns the built-in configuration.
func Default() *Config {
	return &Config{
		Listen:              "/run/peapod/peapod.sock",
		ContainerdAddress:   "/run/containerd/containerd.sock",
		ContainerdNamespace: "k8s.peapod",
		Root:                "/var/lib/peapod",
		State:               "/run/peapod",
		RegistryConfigPath:  "/etc/peapod/certs.d",
		CNIConfDir:          "/etc/cni/net.d",
		CNIBinDir:           []string{"/opt/cni/bin", "/usr/lib/cni"},
		PauseImage:          "registry.k8s.io/pause:3.10",
		PullProgressTimeout: Duration(5 * time.Minute),
		StreamingAddress:    "127.0.0.1:0",
		MetricsAddress:      "",
		Verbosity:           0,
		DefaultRuntime:      "runc",
		Runtimes:            map[string]Runtime{"runc": {Type: RuncShim}},
	}
}

// Load builds the configuration from args (without the program name):
// defaults, then the config file, then the flags given in args.
// The usage text for -h is written to output.
func Load(args []string, output io.Writer) (*Config, error) {
	fromFlags := Default()
	fs := flag.NewFlagSet("peapod", flag.ContinueOnError)
	fs.SetOutput(output)
	path := fs.String("config", DefaultPath, "Path of the TOML config file.")
	for _, f := range fields(fromFlags) {
		if f.flag {
			fs.Var(f, f.key, f.doc)
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })

	cfg := Default()
	if err := cfg.loadFile(*path, explicit); err != nil {
		return nil, err
	}
	for name, r := range cfg.Runtimes {
		if r.Type == "" {
			r.Type = RuncShim
			cfg.Runtimes[name] = r
		}
	}
	// Flags win over the file: copy every flag that was set.
	dst := reflect.ValueOf(cfg).Elem()
	src := reflect.ValueOf(fromFlags).Elem()
	fs.Visit(func(f *flag.Flag) {
		if fv, ok := f.Value.(*field); ok {
			dst.Field(fv.index).Set(src.Field(fv.index))
		}
	})
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) loadFile(path string, mustExist bool) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading config file: %w", err)
	}
	defer f.Close()
	return c.decode(f, path)
}

// decode reads TOML into c, rejecting unknown keys and values of the wrong type.
func (c *Config) decode(r io.Reader, name string) error {
	err := toml.NewDecoder(r).DisallowUnknownFields().Decode(c)
	var strict *toml.StrictMissingError
	var derr *toml.DecodeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &strict):
		keys := make([]string, 0, len(strict.Errors))
		for _, e := range strict.Errors {
			keys = append(keys, strings.Join(e.Key(), "."))
		}
		return fmt.Errorf("config file %s: unknown key(s) %s (see `peapod config default`)", name, strings.Join(keys, ", "))
	case errors.As(err, &derr):
		row, col := derr.Position()
		if key := strings.Join(derr.Key(), "."); key != "" {
			return fmt.Errorf("config file %s:%d:%d: bad value for %q: %s", name, row, col, key, derr.Error())
		}
		return fmt.Errorf("config file %s:%d:%d: %s", name, row, col, derr.Error())
	default:
		return fmt.Errorf("config file %s: %w", name, err)
	}
}

// Validate checks every value, so that a bad one stops peapod at start-up
// with a message naming the key instead of failing later in an RPC.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	for key, p := range map[string]string{
		"listen": c.Listen, "root": c.Root, "state": c.State,
		"registry-config-path": c.RegistryConfigPath, "cni-conf-dir": c.CNIConfDir,
	} {
		if !filepath.IsAbs(p) {
			bad(key, "must be an absolute path, got %q", p)
		}
	}
	if c.ContainerdAddress == "" {
		bad("containerd-address", "must not be empty")
	}
	if err := identifiers.Validate(c.ContainerdNamespace); err != nil {
		bad("containerd-namespace", "%v", err)
	}
	if len(c.CNIBinDir) == 0 {
		bad("cni-bin-dir", "must name at least one directory")
	}
	for _, d := range c.CNIBinDir {
		if !filepath.IsAbs(d) {
			bad("cni-bin-dir", "must hold absolute paths, got %q", d)
		}
	}
	if _, err := reference.ParseNormalizedNamed(c.PauseImage); err != nil {
		bad("pause-image", "%q is not an image reference: %v", c.PauseImage, err)
	}
	if _, _, err := net.SplitHostPort(c.StreamingAddress); err != nil {
		bad("streaming-address", "%v", err)
	}
	if c.StreamingTLSCert != "" && c.StreamingTLSKey == "" {
		bad("streaming-tls-cert", "needs streaming-tls-key")
	}
	if c.StreamingTLSKey != "" && c.StreamingTLSCert == "" {
		bad("streaming-tls-key", "needs streaming-tls-cert")
	}
	if c.StreamingTLSCA != "" && c.StreamingTLSCert == "" {
		bad("streaming-tls-client-ca", "needs streaming-tls-cert and streaming-tls-key")
	}
	for key, p := range map[string]string{
		"streaming-tls-cert": c.StreamingTLSCert, "streaming-tls-key": c.StreamingTLSKey, "streaming-tls-client-ca": c.StreamingTLSCA,
	} {
		if p != "" && !filepath.IsAbs(p) {
			bad(key, "must be an absolute path, got %q", p)
		}
	}
	if c.MetricsAddress != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddress); err != nil {
			bad("metrics-address", "%v", err)
		}
	}
	if c.PullProgressTimeout <= 0 {
		bad("image-pull-progress-timeout", "must be positive, got %s", c.PullProgressTimeout)
	}
	if c.IOBinary != "" && !filepath.IsAbs(c.IOBinary) {
		bad("io-binary", "must be an absolute path, got %q", c.IOBinary)
	}
	if c.Verbosity < 0 {
		bad("v", "must not be negative, got %d", c.Verbosity)
	}
	if _, ok := c.Runtimes[c.DefaultRuntime]; !ok {
		bad("default-runtime", "%q is not a key of [runtimes]", c.DefaultRuntime)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Runtimes)) {
		r, key := c.Runtimes[name], "runtimes."+name
		if !handlerName.MatchString(name) {
			bad(key, "a handler name must be a DNS label (lower-case letters, digits and '-')")
		}
		if r.Type == "" {
			bad(key+".type", "must not be empty (%q runs runc-compatible runtimes)", RuncShim)
		}
		if r.Binary != "" && !filepath.IsAbs(r.Binary) {
			bad(key+".binary", "must be an absolute path, got %q", r.Binary)
		}
		if r.Root != "" && !filepath.IsAbs(r.Root) {
			bad(key+".root", "must be an absolute path, got %q", r.Root)
		}
		if r.Type != RuncShim && (r.Binary != "" || r.Root != "") {
			bad(key, "binary and root are options of %q only", RuncShim)
		}
	}
	return errors.Join(errs...)
}

// handlerName is what a RuntimeClass handler may be: a DNS label.
var handlerName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// WriteDefault writes the default configuration as a commented TOML file.
func WriteDefault(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# peapod configuration. Every key is optional; the values below are the defaults.\n")
	b.WriteString("# Each key is also a command-line flag of the same name, which wins over this file.\n")
	for _, f := range fields(Default()) {
		val := f.v.Interface()
		if d, ok := val.(Duration); ok {
			val = d.String()
		}
		line, err := toml.Marshal(map[string]any{f.key: val})
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\n# %s\n%s", f.doc, line)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// field is one config key, usable as a flag.Value bound to a Config field.
type field struct {
	key, doc string
	index    int
	v        reflect.Value
	flag     bool // whether the key is also a flag (tables are not)
}

func fields(c *Config) []*field {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	out := make([]*field, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		out = append(out, &field{key: sf.Tag.Get("toml"), doc: sf.Tag.Get("doc"), index: i, v: v.Field(i), flag: sf.Tag.Get("flag") != "-"})
	}
	return out
}

func (f *field) String() string {
	if f == nil || !f.v.IsValid() {
		return ""
	}
	switch f.v.Kind() {
	case reflect.Slice:
		return strings.Join(f.v.Interface().([]string), ",")
	default:
		return fmt.Sprint(f.v.Interface())
	}
}

func (f *field) Set(s string) error {
	if d, ok := f.v.Addr().Interface().(*Duration); ok {
		return d.UnmarshalText([]byte(s))
	}
	switch f.v.Kind() {
	case reflect.String:
		f.v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not true or false: %q", s)
		}
		f.v.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("not a whole number: %q", s)
		}
		f.v.SetInt(int64(n))
	case reflect.Slice:
		var list []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		f.v.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("unsupported config type %s", f.v.Kind())
	}
	return nil
}

// Duration is a time.Duration written as a string ("5m", "90s") in the
// config file and on the command line.
type Duration time.Duration

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a duration string such as "5m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (like \"5m\" or \"90s\"): %q", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats d like time.Duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
