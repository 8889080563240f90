#!/usr/bin/env bash
# Installs the Debian packages the offline lab needs. A fast no-op when all are
# present; otherwise apt-get update + install with a temporary policy-rc.d so
# that no package starts its daemon (there is no init system here).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

pkgs=(
	containerd runc crun containernetworking-plugins iptables jq util-linux
	docker-registry skopeo libseccomp-dev pkg-config busybox toybox umoci
	catatonit tini nginx-light iproute2 procps curl tcpdump
	# to build CRIU (build-tools.sh)
	xz-utils libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
	python3-protobuf libnl-3-dev libnet1-dev libcap-dev libaio-dev libbsd-dev libnftables-dev
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

log "installing: ${missing[*]}"
prc=/usr/sbin/policy-rc.d
if [ ! -e "$prc" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$prc" && chmod +x "$prc"
	trap 'rm -f "$prc"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "packages ready"
