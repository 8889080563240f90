#!/usr/bin/env bash
# Builds the lab's pinned tools from the Go module proxy into $LAB_BIN:
# containerd 2.4.2 (+ shim, ctr), runc 1.5.2, critest, crictl and ginkgo from cri-tools 1.36.0,
# the kubelet and agnhost (with --node-conformance also e2e_node.test) from Kubernetes 1.34.4;
# CRIU 4.2.1 from Debian's source archive into /usr/local/sbin (see build_criu), and
# BusyBox 1.37.0 from Debian's source archive for node conformance's images.
# A tool is rebuilt only when its pinned inputs change, so re-runs take seconds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

node_conformance=0
[ "${1:-}" != --node-conformance ] || node_conformance=1

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

# The kubelet and, with --node-conformance, Kubernetes' node conformance suite
# (e2e_node.test), v1.34.4: 1.35 refuses cgroup v1 by default. e2e_node.test
# runs the kubelet it finds beside itself, so both go into $LAB_BIN. About 6
# and 8 minutes on 2 cores.
k8s=k8s.io/component-base/version
k8sver="-X $k8s.gitVersion=v1.34.4 -X $k8s.gitMajor=1 -X $k8s.gitMinor=34 -X $k8s.gitTreeState=clean"
build kubernetes kubelet \
	env CGO_ENABLED=0 go build -trimpath -tags "selinux notest grpcnotrace" -ldflags "-s -w $k8sver" \
	-o "$LAB_BIN/kubelet" k8s.io/kubernetes/cmd/kubelet
if [ "$node_conformance" = 1 ]; then
	build kubernetes e2e_node.test \
		go test -c -trimpath -ldflags "-s -w $k8sver" -o "$LAB_BIN/e2e_node.test" k8s.io/kubernetes/test/e2e_node
	# The ginkgo CLI at the version e2e_node.test is built with, to run it in parallel.
	build kubernetes ginkgo-k8s \
		go build -trimpath -o "$LAB_BIN/ginkgo-k8s" github.com/onsi/ginkgo/v2/ginkgo
fi
# agnhost, the program in most e2e pods (images/build.sh puts it in agnhost:2.56).
build kubernetes agnhost \
	env CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$LAB_BIN/agnhost" k8s.io/kubernetes/test/images/agnhost

# debian_source PACKAGE FILE SHA256: the path of FILE, an upstream source archive in
# Debian's pool for PACKAGE, downloaded once into $LAB_CACHE/src and checked by digest.
debian_source() {
	local pkg=$1 file=$2 sha=$3 src=$LAB_CACHE/src/$2
	mkdir -p "$LAB_CACHE/src"
	if ! echo "$sha  $src" | sha256sum -c --status 2>/dev/null; then
		curl -fsS --retry 3 -o "$src.tmp" "http://deb.debian.org/debian/pool/main/${pkg:0:1}/$pkg/$file"
		echo "$sha  $src.tmp" | sha256sum -c --status || die "$file: digest mismatch"
		mv "$src.tmp" "$src"
	fi
	echo "$src"
}

# CRIU, for checkpoints. Debian 12's CRIU 3.17 cannot run on this kernel (6.13+
# moved the vDSO data pages: "Unexpected rt vDSO area bounds"), and 4.1 hangs
# every dump on this VM, whose hardware breakpoints never fire; 4.2 detects that
# and traps otherwise. Its source comes from Debian's archive (Debian 14's
# CRIU), pinned by digest. It goes where the shims' runc finds it on every lab
# containerd's PATH, and peapod on its own.
criu_version=4.2.1
criu_sha256=29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
build_criu() {
	local want="$criu_version $criu_sha256" stamp=$LAB_BIN/.criu.stamp src work
	if [ -x "$LAB_BIN/criu" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
		install -m 0755 "$LAB_BIN/criu" /usr/local/sbin/criu
		return 0
	fi
	log "building criu $criu_version"
	src=$(debian_source criu "criu_$criu_version.orig.tar.xz" "$criu_sha256")
	work=$(mktemp -d)
	tar -xJf "$src" -C "$work"
	make -C "$work/criu-$criu_version" -j"$(nproc)" criu NO_GNUTLS=1 >"$work/build.log" 2>&1 ||
		{ tail -30 "$work/build.log" >&2; die "criu build failed"; }
	install -m 0755 "$work/criu-$criu_version/criu/criu" "$LAB_BIN/criu"
	rm -rf "$work"
	echo "$want" >"$stamp"
	install -m 0755 "$LAB_BIN/criu" /usr/local/sbin/criu
}
build_criu

# BusyBox 1.37.0, for node conformance's busybox:1.37.0-1 and agnhost images
# (images/build.sh). Debian 12's BusyBox 1.35 differs from it where the specs
# look: no nmeter applet (the lifecycle specs' millisecond clock), and a sh
# that drops environment variables whose names are not identifiers (the
# ConfigMap and Secret specs' "data-1"). Its source comes from Debian's
# archive (Debian 13's BusyBox), pinned by digest; upstream's defconfig, less
# tc, whose traffic-control headers this kernel's no longer have. About a
# minute on 2 cores.
busybox_version=1.37.0
busybox_sha256=3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4
build_busybox() {
	local want="$busybox_version $busybox_sha256" stamp=$LAB_BIN/.busybox-$busybox_version.stamp src work
	if [ -x "$LAB_BIN/busybox-$busybox_version" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
		return 0
	fi
	log "building busybox $busybox_version"
	src=$(debian_source busybox "busybox_$busybox_version.orig.tar.bz2" "$busybox_sha256")
	work=$(mktemp -d)
	tar -xjf "$src" -C "$work"
	(
		cd "$work/busybox-$busybox_version"
		make defconfig >/dev/null
		sed -i 's/^CONFIG_TC=y/# CONFIG_TC is not set/' .config
		make -j"$(nproc)" busybox >"$work/build.log" 2>&1
	) || { tail -30 "$work/build.log" >&2; die "busybox build failed"; }
	install -m 0755 "$work/busybox-$busybox_version/busybox" "$LAB_BIN/busybox-$busybox_version"
	rm -rf "$work"
	echo "$want" >"$stamp"
}
build_busybox

log "tools ready in $LAB_BIN"
