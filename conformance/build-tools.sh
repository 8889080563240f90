#!/usr/bin/env bash
# Builds the lab's pinned tools from the Go module proxy into $LAB_BIN:
# containerd 2.4.2 (+ shim, ctr), runc 1.5.2, critest, crictl and ginkgo from cri-tools 1.36.0.
# A tool is rebuilt only when its module's go.sum changes, so re-runs take seconds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mkdir -p "$LAB_BIN"

# build MODULE_DIR NAME CMD...: run CMD in the module if NAME is missing or stale.
build() {
	local mod=$LAB_DIR/tools/$1 name=$2; shift 2
	local stamp="$LAB_BIN/.$name.stamp" want
	want=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)
	if [ -x "$LAB_BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
		return 0
	fi
	log "building $name"
	(cd "$mod" && "$@")
	echo "$want" >"$stamp"
}

ctrd=github.com/containerd/containerd/v2
build containerd containerd \
	go build -trimpath -tags no_btrfs -ldflags "-X $ctrd/version.Version=v2.4.2" -o "$LAB_BIN/containerd" $ctrd/cmd/containerd
build containerd containerd-shim-runc-v2 \
	env CGO_ENABLED=0 go build -trimpath -tags no_btrfs -ldflags "-X $ctrd/version.Version=v2.4.2" -o "$LAB_BIN/containerd-shim-runc-v2" $ctrd/cmd/containerd-shim-runc-v2
build containerd ctr \
	go build -trimpath -tags no_btrfs -ldflags "-X $ctrd/version.Version=v2.4.2" -o "$LAB_BIN/ctr" $ctrd/cmd/ctr

# runc: libseccomp via cgo; upstream's default libpathrs tag needs a Rust library Debian 12 lacks.
build runc runc \
	go build -trimpath -tags "seccomp urfave_cli_no_docs" \
	-ldflags "-X main.version=1.5.2" -o "$LAB_BIN/runc" github.com/opencontainers/runc

critools=sigs.k8s.io/cri-tools
ver="-X $critools/pkg/version.Version=v1.36.0"
build critools critest \
	go test -c -trimpath -ldflags "$ver" -o "$LAB_BIN/critest" $critools/cmd/critest
build critools crictl \
	go build -trimpath -ldflags "$ver" -o "$LAB_BIN/crictl" $critools/cmd/crictl
build critools ginkgo \
	go build -trimpath -o "$LAB_BIN/ginkgo" github.com/onsi/ginkgo/v2/ginkgo

log "tools ready in $LAB_BIN"
