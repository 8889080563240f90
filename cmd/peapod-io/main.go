// Command peapod-io is the small program peapod runs beside and inside
// containers, kept apart from peapod so that each copy costs little memory
// and starts fast:
//
//   - as a container's IO process: a binary log driver run by the containerd
//     shim, or a fifo relay started by peapod, writing the container's
//     output to its CRI log and serving it to attach clients (package
//     containerio);
//   - as the pause process of peapod's built-in pause image (package pause).
//
// It is not meant to be run by hand.
package main

import (
	"fmt"
	"os"

	"github.com/peapod-cri/peapod/containerio"
	"github.com/peapod-cri/peapod/pause"
)

func main() {
	args := os.Args[1:]
	var err error
	switch {
	case containerio.IsLogDriver(args):
		err = containerio.RunLogDriver(args)
	case containerio.IsFifoRelay(args):
		err = containerio.RunFifoRelay(args[1:])
	case len(args) == 1 && args[0] == pause.Command:
		err = pause.Run()
	default:
		err = fmt.Errorf("usage: run by peapod, as a container's IO process (%s) or the pause process (%s)", containerio.LogDriverFlag, pause.Command)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peapod-io: %v\n", err)
		os.Exit(1)
	}
}
