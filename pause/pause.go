// Package pause is the pause process of peapod's built-in pause image:
// PID 1 of a pod, it holds the pod's namespaces while its containers come
// and go. It is part of the small peapod-io binary, not of peapod.
package pause

import (
	"os"
	"os/signal"
	"syscall"
)

// Command is the argument that makes peapod-io the pause process.
const Command = "pause"

// Run holds on, reaping orphaned zombies, until SIGINT or SIGTERM.
func Run() error {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			return nil
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
	return nil
}
