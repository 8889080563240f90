// Command peapod-io is the small program peapod runs beside containers,
// kept apart from peapod so that it outlives peapod's restarts and costs
// little memory:
//
//   - as the node's IO server (one per peapod state directory), copying
//     every container's output to its CRI log and to attach clients
//     (package containerio);
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
	case containerio.IsServer(args):
		err = containerio.RunServer(args[1:])
	case len(args) == 1 && args[0] == pause.Command:
		err = pause.Run()
	default:
		err = fmt.Errorf("usage: run by peapod, as the IO server (%s) or the pause process (%s)", containerio.ServeArg, pause.Command)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peapod-io: %v\n", err)
		os.Exit(1)
	}
}
