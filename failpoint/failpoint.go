// Package failpoint lets integration tests crash peapod at a named point of
// a multi-step operation, to prove that restart recovery finishes or cleans
// up what was left half-done. It is inert unless PEAPOD_FAILPOINTS is set.
package failpoint

import (
	"os"
	"slices"
	"strings"
	"syscall"

	"k8s.io/klog/v2"
)

// EnvVar names the failpoints to arm, comma-separated.
const EnvVar = "PEAPOD_FAILPOINTS"

var armed = strings.Split(os.Getenv(EnvVar), ",")

// Hit kills peapod with SIGKILL, the way a crash or an OOM kill would end
// it, when the failpoint name is armed.
func Hit(name string) {
	if len(armed) == 1 && armed[0] == "" || !slices.Contains(armed, name) {
		return
	}
	klog.InfoS("Failpoint hit: killing peapod", "failpoint", name)
	klog.Flush()
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // never returns
}
