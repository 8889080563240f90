// Package version holds peapod's build identity, set at link time.
package version

import "runtime/debug"

// Name is the runtime name peapod reports over the CRI.
const Name = "peapod"

// Version is peapod's release version; the Makefile sets it with
// -ldflags "-X github.com/peapod-cri/peapod/version.Version=...".
var Version = "v0.1.0-dev"

// Revision is the VCS revision peapod was built from, when known.
var Revision = ""

func init() {
	if Revision != "" {
		return
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				Revision = s.Value
			}
		}
	}
}
