// Command peapod is a Kubernetes container runtime: a CRI gRPC server that
// drives containerd through its Go client.
//
//	peapod [flags]          serve the CRI (flags: see -h, or `peapod config default`)
//	peapod version          print the version
//	peapod config default   print the default configuration file
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	goruntime "runtime"

	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/config"
	"github.com/peapod-cri/peapod/version"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	klog.Flush()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "peapod: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintf(stdout, "%s %s\n  revision: %s\n  go: %s\n", version.Name, version.Version, version.Revision, goruntime.Version())
			return nil
		case "config":
			if len(args) == 2 && args[1] == "default" {
				return config.WriteDefault(stdout)
			}
			return errors.New("usage: peapod config default")
		}
	}
	cfg, err := config.Load(args, stderr)
	if err != nil {
		return err
	}
	return serve(cfg)
}
