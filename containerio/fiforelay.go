package containerio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/fifo"
)

// FifoRelayArg, as the first argument, starts the IO binary as the fifo
// relay of a container.
const FifoRelayArg = "peapod-container-io"

// fifoOpenTimeout bounds how long a fifo relay waits for the shim to open
// the output fifos: a relay whose task was never created (peapod died
// before) must not wait forever.
const fifoOpenTimeout = 5 * time.Minute

// IsFifoRelay reports whether the arguments start a container's fifo relay.
func IsFifoRelay(args []string) bool { return len(args) > 0 && args[0] == FifoRelayArg }

// RunFifoRelay is the fifo relay of a container without a terminal but
// with stdin: args (after FifoRelayArg) are "key value" pairs naming the
// stdout and stderr fifos, and, as for the log driver, the log path, the
// attach socket and the pid file. It signals readiness on file descriptor 3
// and exits when both output fifos reach EOF after the container ended.
func RunFifoRelay(args []string) error {
	opts := parseOptions(args)
	if opts[OptStdout] == "" || opts[OptStderr] == "" {
		return errors.New("container IO: stdout and stderr fifos are required")
	}
	// Opening a fifo for reading waits for a writer (the shim, at NewTask):
	// the opens go on in the background, ended by the timeout if the task
	// never comes.
	ctx, cancel := context.WithTimeout(context.Background(), fifoOpenTimeout)
	defer cancel()
	var streams []outputStream
	for _, s := range []struct {
		path string
		id   byte
	}{{opts[OptStdout], StreamStdout}, {opts[OptStderr], StreamStderr}} {
		f, err := fifo.OpenFifo(ctx, s.path, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("container IO: opening %s: %w", s.path, err)
		}
		defer f.Close()
		streams = append(streams, outputStream{f, s.id})
	}
	return relayOutput(opts, streams, func() {
		ready := os.NewFile(3, "ready")
		_, _ = ready.Write([]byte{1})
		_ = ready.Close()
	})
}
